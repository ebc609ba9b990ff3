//! What the Prometheus metrics of both processes share: the buckets of
//! every duration histogram, the label sets, and the text encoding. The
//! metrics themselves live beside their process (`metrics::orchestrator`,
//! `metrics::worker`); the exposition is written by `prometheus-client`,
//! never by hand.
//!
//! # The format
//! The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), which
//! every Prometheus server and agent reads; OpenMetrics adds nothing these
//! metrics need. It has no `# EOF` line, so a process's fixed registry
//! (counters, histograms) and the one it fills at scrape time (gauges read
//! from live state) are written one after the other into one answer.

use std::fmt;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of `GET /metrics/prometheus`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds, in seconds, of every duration histogram: tasks here last
/// from ~100 µs (a tiny simulation) to hours (a large one, or a long wait
/// in the queue), so the buckets go 1–2.5–5 per decade from 100 µs to
/// 10 s, then by minutes to 4 h. 26 buckets per kernel is cheap.
pub const DURATION_BUCKETS: [f64; 26] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 14400.0,
];

/// A new histogram over [`DURATION_BUCKETS`] (the constructor of a
/// histogram family).
pub fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// `{kernel}`: the kernel a task ran on (`reference`, `optimized`, or a
/// test kernel), never the alias it was written with: a fixed, small set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KernelLabel {
    pub kernel: &'static str,
}

/// `{outcome, kernel}`: how a task (or, on a worker, a run) ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
    pub kernel: &'static str,
}

/// `{worker}`: a worker's id, as in `GET /workers`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: String,
}

/// `{state}`: a worker's state, as in `GET /workers`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// `{status, priority}`: a task's status and priority.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
    pub priority: &'static str,
}

/// The registries, one after the other, as one text exposition.
pub fn encode(registries: &[&Registry]) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(16 << 10);
    for r in registries {
        prometheus_text::encode(&mut text, r)?;
    }
    Ok(text)
}

/// What breaks Prometheus naming practice in an exposition: every family
/// is `orquesta_…`, counters end in `_total`, histograms (all durations
/// here) in `_seconds`, gauges in neither; a name is declared once. For
/// the unit tests of both processes' metrics.
#[cfg(test)]
pub fn naming_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
        if !seen.insert(name.to_string()) {
            problems.push(format!("{name} is declared twice"));
        }
        if !name.starts_with("orquesta_") {
            problems.push(format!("{name} does not start with orquesta_"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            problems.push(format!("{name} is not snake_case"));
        }
        let ok = match kind {
            "counter" => name.ends_with("_total"),
            "histogram" => name.ends_with("_seconds"),
            "gauge" => !name.ends_with("_total") && !name.ends_with("_count") && !name.ends_with("_sum"),
            _ => false,
        };
        if !ok {
            problems.push(format!("{name} ({kind}) breaks the naming rules"));
        }
    }
    problems
}

/// The value of the sample line `series` (name and labels as written) in
/// an exposition. For unit tests.
#[cfg(test)]
pub fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    /// The bounds a duration histogram has, as encoded.
    fn duration_histogram_bounds() -> Vec<f64> {
        let mut r = Registry::default();
        r.register("orquesta_t_seconds", "t", duration_histogram());
        let text = encode(&[&r]).unwrap();
        text.lines()
            .filter_map(|l| l.split_once("le=\"")?.1.split_once('"')?.0.parse().ok())
            .filter(|b: &f64| b.is_finite())
            .collect()
    }

    #[test]
    fn buckets_cover_a_hundred_microseconds_to_hours_in_order() {
        let b = duration_histogram_bounds();
        assert!(b[0] <= 1e-4, "{b:?}");
        assert!(*b.last().unwrap() >= 3.0 * 3600.0, "{b:?}");
        assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
    }

    #[test]
    fn the_text_format_has_no_eof_line_so_registries_join() {
        let (mut a, mut b) = (Registry::default(), Registry::default());
        a.register("orquesta_a", "a", Counter::<u64>::default());
        b.register("orquesta_b", "b", Counter::<u64>::default());
        let text = encode(&[&a, &b]).unwrap();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("orquesta_a_total 0\n") && text.contains("orquesta_b_total 0\n"),
            "{text}"
        );
        assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
        assert_eq!(naming_problems(&text), Vec::<String>::new());
    }

    #[test]
    fn the_naming_check_catches_what_it_should() {
        let text = "# TYPE orquesta_x counter\n# TYPE orquesta_y_total gauge\n\
                    # TYPE orquesta_wait histogram\n# TYPE other_total counter\n# TYPE orquesta_x counter\n";
        let problems = naming_problems(text);
        assert_eq!(problems.len(), 6, "{problems:?}");
    }
}
