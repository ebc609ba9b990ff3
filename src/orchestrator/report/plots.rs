//! The report's charts, drawn by `plotters` into SVG text: one chart is a
//! set of lines, each a list of points with an optional error bar (mean ±
//! standard error), on labelled axes. Text is escaped by plotters' SVG
//! backend; the browser draws the labels with its own sans-serif font.

use plotters::prelude::*;

/// One line of a chart: its legend and its points (x, y, error).
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64, Option<f64>)>,
}

/// A chart's size in pixels.
pub const WIDTH: u32 = 560;
pub const HEIGHT: u32 = 360;

/// Lowest and highest of `values`, widened by 5 % (and made a range when
/// every value is the same).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1e-12) * 0.05
    };
    (lo - pad, hi + pad)
}

/// Height in pixels of the plotting area (the chart less its caption,
/// margins and x-axis labels).
const PLOT_PX: f64 = (HEIGHT - 16 - 2 * 12 - 42) as f64;

/// The share of the plotting area's height the legend box takes at the
/// top for `lines` lines (12 px labels), at most 0.6.
fn legend_share(lines: usize) -> f64 {
    ((14.0 * lines as f64 + 14.0) / PLOT_PX).min(0.6)
}

/// The y axis: every point with its error bar, and with a legend, room
/// above the highest for the legend box, so that it hides no point.
fn y_range(series: &[Series<'_>], legend: bool) -> (f64, f64) {
    let (y0, y1) = span(series.iter().flat_map(|s| s.points.iter()).flat_map(|p| {
        let e = p.2.unwrap_or(0.0);
        [p.1 - e, p.1 + e]
    }));
    if !legend {
        return (y0, y1);
    }
    let share = legend_share(series.len());
    (y0, y1 + (y1 - y0) * share / (1.0 - share))
}

/// The chart as an `<svg>` element.
pub fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, title, x_label, y_label, series).map_err(|e| format!("cannot draw {title}: {e}"))?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(text)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = span(all().map(|p| p.0));
    let legend = series.len() > 1 || series.first().is_some_and(|s| !s.label.is_empty());
    let (y0, y1) = y_range(series, legend);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(8)
        .y_labels(8)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(text)?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(text)?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(s.points.iter().filter_map(|p| {
                p.2.map(|e| ErrorBar::new_vertical(p.0, p.1 - e, p.1, p.1 + e, color.stroke_width(1), 8))
            }))
            .map_err(text)?;
        if s.points.len() < 200 {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
                )
                .map_err(text)?;
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(text)?;
    }
    root.present().map_err(text)
}

/// A drawing error as text.
fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_has_room_above_every_point() {
        let line = |label, top| Series {
            label,
            points: vec![(0.0, 1.0, None), (1.0, top, Some(0.5))],
        };
        let s = [line("a", 4.0), line("b", 2.0), line("c", 3.0)];
        let (y0, y1) = y_range(&s, true);
        // the highest error bar's top (4.5) sits below the legend's box
        let box_bottom = y1 - (y1 - y0) * legend_share(3);
        assert!(
            4.5 < box_bottom && box_bottom < 4.5 + (y1 - y0) * 0.1,
            "{y0} {y1} {box_bottom}"
        );
        assert_eq!(y_range(&s[..1], false), span([1.0, 1.0, 3.5, 4.5].into_iter()));
    }

    #[test]
    fn a_chart_is_svg_with_its_labels_escaped() {
        let s = [Series {
            label: "w<1>",
            points: vec![(1.0, 2.0, Some(0.5)), (2.0, 3.0, None)],
        }];
        let svg = chart("P against ρ", "density ρ (σ⁻²)", "P (ε/σ²)", &s).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("density ρ (σ⁻²)"));
        assert!(svg.contains("w&lt;1&gt;") && !svg.contains("w<1>"));
        // one point only, and no point at all, still draw
        assert!(chart(
            "t",
            "x",
            "y",
            &[Series {
                label: "",
                points: vec![(1.0, 1.0, None)]
            }]
        )
        .is_ok());
        assert!(chart("t", "x", "y", &[]).is_ok());
    }
}
