//! How the LoadBalancer picks among eligible workers
//! (`LOAD_BALANCING_ALGORITHM`). Adding a strategy: implement [`Strategy`]
//! and add a line to [`strategy`].

use crate::config::Balancing;

/// What a strategy sees of one worker.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub in_flight: usize,
    pub capacity: usize,
}

/// Picks one worker among the eligible ones. Adding a strategy: implement
/// this and add a line to [`strategy`].
pub trait Strategy: Send {
    fn name(&self) -> &'static str;
    /// Index of the chosen worker; `eligible(i)` says whether worker `i`
    /// (in `config_workers.json` order) may take the task.
    fn pick(&mut self, loads: &[Load], eligible: &dyn Fn(usize) -> bool) -> Option<usize>;
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

/// The strategy for a setting.
pub fn strategy(b: Balancing) -> Box<dyn Strategy> {
    match b {
        Balancing::RoundRobin => Box::<RoundRobin>::default(),
        Balancing::LeastLoaded => Box::new(LeastLoaded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(v: &[(usize, usize)]) -> Vec<Load> {
        v.iter()
            .map(|&(in_flight, capacity)| Load { in_flight, capacity })
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
}
