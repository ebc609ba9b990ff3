//! How the Membership picks among eligible workers
//! (`LOAD_BALANCING_ALGORITHM`). Adding a strategy: implement [`Strategy`]
//! and add a line to [`strategy`].

use crate::orchestrator::config::Balancing;

/// What a strategy sees of one worker.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub in_flight: usize,
    pub capacity: usize,
    /// Seconds from now until this worker would finish the task being
    /// placed (`expected.rs`); filled only for a strategy that
    /// [`Strategy::uses_estimates`], 0 otherwise.
    pub expected_finish: f64,
}

/// Picks one worker among the eligible ones. Adding a strategy: implement
/// this and add a line to [`strategy`].
pub trait Strategy: Send {
    fn name(&self) -> &'static str;
    /// Index of the chosen worker; `eligible(i)` says whether worker `i`
    /// (in `config_workers.json` order) may take the task.
    fn pick(&mut self, loads: &[Load], eligible: &dyn Fn(usize) -> bool) -> Option<usize>;
    /// True when it needs [`Load::expected_finish`] and wants each batch
    /// largest first (within a priority): the Membership then predicts
    /// every task's time, which the others do not pay for.
    fn uses_estimates(&self) -> bool {
        false
    }
}

/// Each eligible worker in turn, in configuration order.
#[derive(Default)]
pub struct RoundRobin {
    next: usize,
}

impl Strategy for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn pick(&mut self, loads: &[Load], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = loads.len();
        (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| eligible(i))
            .inspect(|&i| {
                self.next = i + 1;
            })
    }
}

/// The eligible worker with the lowest in-flight / capacity; ties go to
/// fewer tasks in flight, then to configuration order.
pub struct LeastLoaded;

impl Strategy for LeastLoaded {
    fn name(&self) -> &'static str {
        "least_loaded"
    }

    fn pick(&mut self, loads: &[Load], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        (0..loads.len()).filter(|&i| eligible(i)).min_by(|&a, &b| {
            let (la, lb) = (loads[a], loads[b]);
            // la.in/la.cap vs lb.in/lb.cap without floating point
            (la.in_flight * lb.capacity)
                .cmp(&(lb.in_flight * la.capacity))
                .then(la.in_flight.cmp(&lb.in_flight))
                .then(a.cmp(&b))
        })
    }
}

/// The eligible worker that would finish the task first
/// ([`Load::expected_finish`]); ties (as with no history, when every
/// worker is predicted alike) go as with [`LeastLoaded`]. The Membership
/// hands it each batch largest first within a priority, so together they
/// are "largest task first, onto the worker that finishes it first".
pub struct ShortestExpectedFinish;

impl Strategy for ShortestExpectedFinish {
    fn name(&self) -> &'static str {
        "shortest_expected_finish"
    }

    fn pick(&mut self, loads: &[Load], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let finish = |i: usize| {
            let f = loads[i].expected_finish;
            // a prediction that is not a number ranks last, never first
            if f.is_nan() {
                f64::INFINITY
            } else {
                f
            }
        };
        (0..loads.len()).filter(|&i| eligible(i)).min_by(|&a, &b| {
            let (la, lb) = (loads[a], loads[b]);
            finish(a)
                .total_cmp(&finish(b))
                .then((la.in_flight * lb.capacity).cmp(&(lb.in_flight * la.capacity)))
                .then(la.in_flight.cmp(&lb.in_flight))
                .then(a.cmp(&b))
        })
    }

    fn uses_estimates(&self) -> bool {
        true
    }
}

/// The strategy for a setting.
pub fn strategy(b: Balancing) -> Box<dyn Strategy> {
    match b {
        Balancing::RoundRobin => Box::<RoundRobin>::default(),
        Balancing::LeastLoaded => Box::new(LeastLoaded),
        Balancing::ShortestExpectedFinish => Box::new(ShortestExpectedFinish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(v: &[(usize, usize)]) -> Vec<Load> {
        v.iter()
            .map(|&(in_flight, capacity)| Load {
                in_flight,
                capacity,
                expected_finish: 0.0,
            })
            .collect()
    }

    #[test]
    fn round_robin_rotates_over_eligible_workers_only() {
        let mut rr = RoundRobin::default();
        let l = loads(&[(0, 9), (0, 9), (0, 9), (0, 9)]);
        let eligible = |i: usize| i != 2;
        let picks: Vec<_> = (0..6).map(|_| rr.pick(&l, &eligible).unwrap()).collect();
        assert_eq!(picks, [0, 1, 3, 0, 1, 3]);
        assert_eq!(rr.pick(&l, &|_| false), None);
    }

    #[test]
    fn least_loaded_compares_ratios_and_breaks_ties_by_order() {
        let mut ll = LeastLoaded;
        // 1/3 < 1/2
        assert_eq!(ll.pick(&loads(&[(1, 2), (1, 3)]), &|_| true), Some(1));
        // equal ratio 0: fewer in flight wins, then order
        assert_eq!(ll.pick(&loads(&[(0, 1), (0, 3)]), &|_| true), Some(0));
        assert_eq!(ll.pick(&loads(&[(2, 4), (1, 2)]), &|_| true), Some(1));
        assert_eq!(ll.pick(&loads(&[(0, 1), (5, 9)]), &|i| i == 1), Some(1));
    }

    fn finishing(v: &[(usize, usize, f64)]) -> Vec<Load> {
        v.iter()
            .map(|&(in_flight, capacity, expected_finish)| Load {
                in_flight,
                capacity,
                expected_finish,
            })
            .collect()
    }

    #[test]
    fn shortest_expected_finish_picks_the_earliest_finisher_among_eligible() {
        let mut s = ShortestExpectedFinish;
        // the busier worker finishes first: it wins over the idle one
        let l = finishing(&[(0, 1, 9.0), (3, 4, 2.5), (0, 2, 4.0)]);
        assert_eq!(s.pick(&l, &|_| true), Some(1));
        // not eligible: the next earliest
        assert_eq!(s.pick(&l, &|i| i != 1), Some(2));
        assert_eq!(s.pick(&l, &|_| false), None);
        // a prediction that is not a number never wins
        let l = finishing(&[(0, 1, f64::NAN), (0, 1, 7.0)]);
        assert_eq!(s.pick(&l, &|_| true), Some(1));
    }

    #[test]
    fn shortest_expected_finish_without_history_falls_back_to_least_loaded() {
        let mut s = ShortestExpectedFinish;
        let mut ll = LeastLoaded;
        for v in [
            vec![(1, 2, 1.0), (1, 3, 1.0)],
            vec![(0, 1, 1.0), (0, 3, 1.0)],
            vec![(2, 4, 1.0), (1, 2, 1.0)],
        ] {
            let l = finishing(&v);
            assert_eq!(s.pick(&l, &|_| true), ll.pick(&l, &|_| true), "{v:?}");
        }
        assert!(s.uses_estimates() && !ll.uses_estimates());
        assert!(!RoundRobin::default().uses_estimates());
    }

    #[test]
    fn every_setting_has_its_strategy_under_the_same_name() {
        for b in Balancing::ALL {
            assert_eq!(strategy(b).name(), b.as_str());
        }
    }
}
