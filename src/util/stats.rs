//! Small statistics: one nearest-rank percentile and a bounded window of
//! recent samples, shared by the worker's metrics, the orchestrator's
//! performance figures and the benchmarks.

use std::collections::VecDeque;

use serde::Serialize;

/// Nearest-rank percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The figures a [`Samples`] window reports; all but `count` absent when empty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub figures: Option<Figures>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The most recent `capacity` values.
#[derive(Debug, Clone)]
pub struct Samples {
    values: VecDeque<f64>,
    capacity: usize,
}

impl Samples {
    pub fn new(capacity: usize) -> Self {
        Self {
            values: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn push(&mut self, v: f64) {
        if self.values.len() == self.capacity {
            self.values.pop_front();
        }
        self.values.push_back(v);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values, sorted.
    pub fn sorted(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.values.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn summary(&self) -> Summary {
        let v = self.sorted();
        let figures = (!v.is_empty()).then(|| Figures {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: percentile(&v, 0.5),
            p90: percentile(&v, 0.9),
            p99: percentile(&v, 0.99),
            max: v[v.len() - 1],
        });
        Summary {
            count: v.len(),
            figures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.9), 90.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }

    #[test]
    fn a_window_keeps_the_most_recent_values_and_summarises_them() {
        let mut s = Samples::new(3);
        assert_eq!(
            serde_json::to_value(s.summary()).unwrap(),
            serde_json::json!({"count": 0})
        );
        for v in [10.0, 1.0, 2.0, 3.0] {
            s.push(v);
        }
        assert_eq!(s.len(), 3);
        let f = s.summary().figures.unwrap();
        assert_eq!((f.mean, f.p50, f.max), (2.0, 2.0, 3.0));
        let json = serde_json::to_value(s.summary()).unwrap();
        assert_eq!(json["count"], 3);
        assert_eq!(json["p99"], 3.0);
    }
}
