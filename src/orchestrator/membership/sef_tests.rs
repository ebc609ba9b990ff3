//! Membership tests of `shortest_expected_finish`: largest first within
//! a priority, and placement by speeds learned from releases.

use super::tests::Cluster;
use super::*;

fn worker(id: &str, port: u16, capacity: usize) -> WorkerEntry {
    WorkerEntry {
        id: id.into(),
        host: "127.0.0.1".into(),
        port,
        capacity,
        algorithms: vec!["optimized".into(), "reference".into()],
        tls: false,
    }
}

/// A wired cluster with `shortest_expected_finish`, every worker up.
async fn wired(entries: &[WorkerEntry]) -> Cluster {
    let t = Cluster::wired(entries, Balancing::ShortestExpectedFinish).await;
    for e in entries {
        t.report_up(&e.id, e.capacity, vec!["optimized", "reference"])
            .await;
    }
    t
}

fn task(kernel: &'static str, priority: u8, particles: u64, steps: u64, avoid: &[&str]) -> ToPlace {
    ToPlace {
        kernel: kernel.into(),
        avoid: avoid.iter().map(|a| WorkerId::new(a)).collect(),
        priority: crate::model::Priority::from_rank(priority),
        size: (particles, steps),
    }
}

/// Where each task went, in the order given.
async fn assign(t: &Cluster, tasks: Vec<ToPlace>) -> Vec<Option<String>> {
    t.assign(tasks).await
}

async fn completed(t: &Cluster, worker: &str, task: &ToPlace, seconds: f64) {
    t.release(worker, Ended::Completed { seconds }, Some(task.task_size()))
        .await;
}

fn some(w: &str) -> Option<String> {
    Some(w.to_string())
}

#[test]
fn the_largest_task_of_a_priority_goes_first_and_never_jumps_a_better_priority() {
    actix_rt::System::new().block_on(async {
        let lb = wired(&[worker("a", 1, 1)]).await;
        // one slot, three medium tasks: the largest takes it (at the prior
        // speeds reference N = 500 takes ~60× as long as optimized N = 500);
        // the answers stay in the order given
        let batch = vec![
            task("optimized", 1, 100, 100, &[]),
            task("reference", 1, 500, 100, &[]),
            task("optimized", 1, 500, 100, &[]),
        ];
        assert_eq!(assign(&lb, batch.clone()).await, [None, some("a"), None]);
        completed(&lb, "a", &batch[1], 0.5).await;
        // a small high-priority task before a huge medium one: high first
        let batch = vec![
            task("optimized", 0, 100, 10, &[]),
            task("reference", 1, 3000, 1000, &[]),
        ];
        assert_eq!(assign(&lb, batch).await, [some("a"), None]);
    });
}

#[test]
fn tasks_go_to_the_worker_learned_to_finish_them_first() {
    actix_rt::System::new().block_on(async {
        let lb = wired(&[worker("slow", 1, 1), worker("fast", 2, 1)]).await;
        let t = task("optimized", 1, 1000, 1000, &[]);
        // no history: alike, so configuration order (as least_loaded)
        assert_eq!(assign(&lb, vec![t.clone()]).await, [some("slow")]);
        completed(&lb, "slow", &t, 1.0).await;
        let on_fast = task("optimized", 1, 1000, 1000, &["slow"]);
        assert_eq!(assign(&lb, vec![on_fast.clone()]).await, [some("fast")]);
        completed(&lb, "fast", &on_fast, 0.1).await;
        // learned: fast is 10× faster, so it gets the next task although
        // slow comes first in the configuration
        assert_eq!(assign(&lb, vec![t.clone()]).await, [some("fast")]);
        // fast is full now: the next one waits for nobody, slow takes it
        assert_eq!(assign(&lb, vec![t.clone()]).await, [some("slow")]);
        // the speed is per kernel: nothing learned on reference, both
        // alike there; both are full, so nothing is placed
        assert_eq!(
            assign(&lb, vec![task("reference", 1, 100, 10, &[])]).await,
            [None]
        );
    });
}
