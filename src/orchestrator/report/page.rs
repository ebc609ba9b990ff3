//! The report as one HTML page: no script that runs, no style sheet, font
//! or image from anywhere else (charts are inline SVG), so it can be
//! mailed or archived and opens offline. Its data ([`StudyReport`]) is
//! embedded as JSON in `<script type="application/json" id="report-data">`
//! (never run by a browser) for readers that want the numbers. Every text
//! that comes from a task (the study's name, task and worker ids, kernel
//! names) is HTML-escaped.

use std::fmt::Write;

use super::plots::{chart, Series};
use super::{parameter_label, OBSERVABLES};
use crate::protocol::studies::StudyReport;

/// `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON safe inside a `<script>` element: `<`, `>` and `&` as `\u` escapes
/// (the same value to a JSON reader), so no text can close the element.
fn script_json(report: &StudyReport) -> String {
    serde_json::to_string(report)
        .expect("a report serializes")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:.85em;color:#555}\
.note{color:#555}code{background:#f3f3f3;padding:0 .2em}";

/// The page of `report`.
pub fn render(report: &StudyReport) -> Result<String, String> {
    let study = escape(&report.study);
    let mut html = String::with_capacity(64 << 10);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Study {study}: Orquesta report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Study <code>{study}</code></h1>\n<p>{} completed of {} tasks. Swept: {}. \
         Each point is the mean over the replicas (runs that differ only in their seed) at one grid point, \
         the error bar ± its standard error (sample standard deviation over √n; none for a single run). \
         LJ reduced units (ε = σ = m = k_B = 1), energies per particle.</p>\n",
        report.completed,
        report.tasks,
        if report.swept.is_empty() {
            "nothing (every task has the same parameters)".to_string()
        } else {
            report
                .swept
                .iter()
                .map(|s| format!("<code>{}</code>", escape(s)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    html.push_str("<h2 id=\"observables\">Observables against the swept parameters</h2>\n");
    if report.plots.is_empty() {
        html.push_str(
            "<p class=\"note\">no plot: no completed task yet, or no parameter takes more than one value</p>\n",
        );
    }
    html.push_str("<div class=\"charts\">\n");
    for plot in &report.plots {
        let y_label = OBSERVABLES
            .iter()
            .find(|(o, _)| *o == plot.observable)
            .map_or(plot.observable.as_str(), |(_, l)| l);
        let x_label = parameter_label(&plot.parameter);
        let series: Vec<Series<'_>> = plot
            .lines
            .iter()
            .map(|l| Series {
                label: &l.label,
                points: l.points.iter().map(|p| (p.x, p.mean, p.sem)).collect(),
            })
            .collect();
        let svg = chart(
            &format!("{} against {}", plot.observable, plot.parameter),
            &x_label,
            y_label,
            &series,
        )?;
        let _ = writeln!(
            html,
            "<figure data-observable=\"{}\" data-parameter=\"{}\">{svg}</figure>",
            escape(&plot.observable),
            escape(&plot.parameter)
        );
    }
    html.push_str("</div>\n<h2 id=\"thermo\">Thermo series</h2>\n");
    match &report.thermo {
        None => html.push_str(
            "<p class=\"note\">no completed task ran with <code>thermo_every</code> \
             (set it with <code>orquesta gen --set thermo_every=100</code>)</p>\n",
        ),
        Some(t) => {
            let _ = writeln!(
                html,
                "<p>Task <code>{}</code> (choose another with <code>?task=ID</code> or \
                 <code>orquesta report --task ID</code>), every row of <code>metrics.thermo</code>.</p>\n<div class=\"charts\">",
                escape(&t.task_id)
            );
            let step =
                |f: fn(&crate::protocol::studies::ThermoPoint) -> f64| -> Vec<(f64, f64, Option<f64>)> {
                    t.rows.iter().map(|r| (r.step as f64, f(r), None)).collect()
                };
            let charts = [
                (
                    "energies per particle",
                    "energy per particle (ε)",
                    vec![
                        Series {
                            label: "E/N total",
                            points: step(|r| r.total_energy),
                        },
                        Series {
                            label: "U/N potential",
                            points: step(|r| r.potential_energy),
                        },
                        Series {
                            label: "K/N kinetic",
                            points: step(|r| r.kinetic_energy),
                        },
                    ],
                ),
                (
                    "temperature",
                    "temperature T (ε/k_B)",
                    vec![Series {
                        label: "",
                        points: step(|r| r.temperature),
                    }],
                ),
                (
                    "pressure",
                    "pressure P (ε/σ²)",
                    vec![Series {
                        label: "",
                        points: step(|r| r.pressure),
                    }],
                ),
            ];
            for (title, y, series) in charts {
                let svg = chart(title, "step", y, &series)?;
                let _ = writeln!(html, "<figure data-thermo=\"{title}\">{svg}</figure>");
            }
            html.push_str("</div>\n");
        }
    }
    html.push_str("<h2 id=\"scaling\">Execution time against N, per kernel and worker</h2>\n");
    if report.scaling.is_empty() {
        html.push_str("<p class=\"note\">no completed task yet</p>\n");
    } else {
        let labels: Vec<String> = report
            .scaling
            .iter()
            .map(|l| format!("{} on {}", l.kernel, l.worker_id))
            .collect();
        let series: Vec<Series<'_>> = report
            .scaling
            .iter()
            .zip(&labels)
            .map(|(l, label)| Series {
                label,
                points: l.points.iter().map(|p| (p.x, p.mean, p.sem)).collect(),
            })
            .collect();
        let svg = chart(
            "execution time (mean ± standard error)",
            "particles N",
            "execution time (s)",
            &series,
        )?;
        let _ = writeln!(html, "<figure data-scaling=\"1\">{svg}</figure>");
    }
    let _ = write!(
        html,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n</body>\n</html>\n",
        script_json(report)
    );
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::studies::ThermoSeries;

    #[test]
    fn names_are_escaped_and_the_data_reads_back() {
        let report = StudyReport {
            study: "<script>alert(1)</script>".into(),
            completed: 0,
            tasks: 1,
            swept: vec![],
            plots: vec![],
            // a task id cannot hold markup (TaskId refuses it): the study
            // name carries the attempt
            thermo: Some(ThermoSeries {
                task_id: "t-1".into(),
                rows: vec![],
            }),
            scaling: vec![],
        };
        let html = render(&report).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // nothing loaded from anywhere, nothing that runs
        assert!(!html.contains("<link") && !html.contains("src=") && !html.contains("href="));
        assert_eq!(html.matches("<script").count(), 1, "only the JSON data");
        let start = html.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        let back: StudyReport = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(back, report);
    }
}
