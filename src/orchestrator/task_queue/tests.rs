//! TaskQueue's actor tests: driven message by message.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::model::{Task, TaskStatus, Validator};
use crate::orchestrator::config::Balancing;
use crate::orchestrator::membership::{Membership, Wire};
use crate::orchestrator::results_store::ResultsStore;
use crate::orchestrator::store;

fn tasks(ids: &[(&str, &str)]) -> Vec<Task> {
    let v = Validator {
        limits: crate::sim::Limits::default(),
        test_kernels: false,
        algorithms: None,
    };
    ids.iter()
        .map(|(id, priority)| {
            v.task(
                &json!({"task_id": id, "algorithm": "python", "priority": priority,
                        "parameters": {"num_particles": 100, "num_steps": 5, "seed": 1}}),
                "",
            )
            .unwrap()
        })
        .collect()
}

/// A queue with no workers: everything stays queued, so its state
/// machine can be driven message by message.
#[test]
fn the_state_machine_without_workers() {
    let dir = tempfile::tempdir().unwrap();
    actix_rt::System::new().block_on(async {
        let store = Store::start(store::open(&dir.path().join("q.db"), false).unwrap());
        let lb = Membership::new(&[], Balancing::RoundRobin);
        let board = lb.board();
        let lb = lb.start();
        let results = ResultsStore::new(store.clone(), dir.path(), dir.path(), Duration::from_secs(60), "round_robin").start();
        let settings = QueueSettings {
            max_retries: 3,
            retry_base: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            sweep_interval: Duration::from_secs(60),
            performance: true,
            verify_fraction: 0.0,
            sooner_starts: Some(Default::default()),
        };
        let peers = Peers::new(&lb, &results, HashMap::new());
        let queue = TaskQueue::new(
            store,
            peers,
            settings,
            1,
            Loads::default(),
            board,
            Default::default(),
            Default::default(),
        )
        .start();
        lb.send(Wire {
            core: queue.clone().recipient(),
            full: queue.clone().recipient(),
            proxies: Vec::new(),
            outcomes: queue.clone().recipient(),
            started: queue.clone().recipient(),
            took_back: queue.clone().recipient(),
            settings: crate::orchestrator::worker_proxy::ProxySettings::for_tests(Duration::from_secs(1), Duration::from_secs(5)),
            store: None,
            limits: Default::default(),
        })
        .await
        .unwrap();
        let submit = |t: Vec<Task>| {
            queue.send(SubmitBatch {
                tasks: t,
                ingest: None,
                source: "test".into(),
            })
        };
        let r = submit(tasks(&[("a", "low"), ("b", "high"), ("c", "medium")])).await.unwrap();
        assert_eq!(r, Ok(Submitted::Queued { count: 3 }));
        let dup = submit(tasks(&[("d", "low"), ("b", "low")])).await.unwrap();
        match dup {
            Err(SubmitError::Duplicates(d)) => assert_eq!(d.ids, ["b"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(queue.send(LiveCount).await.unwrap(), 3, "d was not queued");

        let stats = queue.send(QueueStats).await.unwrap();
        assert_eq!(stats.queue.ready_by_priority, [1, 1, 1]);
        assert_eq!(stats.since_start.submitted, 3);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["queue"]["ready_by_priority"], json!([1, 1, 1]));
        assert_eq!(json["since_start"]["submitted"], 3);

        let why = queue
            .send(WhyWaiting {
                task_id: "a".into(),
                kernel: "reference".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(why.reason.contains("no configured worker runs reference"), "{}", why.reason);
        assert!(why.reason.contains("2 tasks ahead"), "{}", why.reason);

        let cancel = |id: &str| queue.send(CancelTask { task_id: id.into() });
        assert!(matches!(cancel("b").await.unwrap(), Ok(CancelOutcome::Cancelled { was, .. }) if was == TaskStatus::Queued));
        assert_eq!(queue.send(LiveCount).await.unwrap(), 2);
        assert!(matches!(cancel("b").await.unwrap(), Ok(CancelOutcome::AlreadyEnded { .. })));
        assert_eq!(cancel("zz").await.unwrap(), Ok(CancelOutcome::NotFound));

        let retry = queue.send(RetryTask { task_id: "b".into() }).await.unwrap();
        assert!(matches!(retry, Ok(RetryOutcome::Queued { .. })));
        assert_eq!(queue.send(LiveCount).await.unwrap(), 3);
        let again = queue.send(RetryTask { task_id: "a".into() }).await.unwrap();
        assert!(matches!(again, Ok(RetryOutcome::NotRetryable { status }) if status == TaskStatus::Queued));

        // a result for a task nobody ran is ignored and counted
        queue
            .send(AttemptOutcome {
                task_id: "gone".into(),
                attempt_id: 7.into(),
                worker_id: WorkerId::new("w"),
                kind: OutcomeKind::Failed("x".into()),
            })
            .await
            .unwrap();
        assert_eq!(queue.send(LiveCount).await.unwrap(), 3);
    });
}

#[test]
fn backoff_doubles_with_jitter_and_a_cap() {
    let policy = RetryPolicy {
        max_retries: 3,
        base_seconds: 0.5,
        max_seconds: 30.0,
    };
    let mut q = LiveTasks::new(policy, 1, 42);
    for (attempts, base) in [(1u32, 0.5f64), (2, 1.0), (3, 2.0), (10, 30.0), (40, 30.0)] {
        for _ in 0..50 {
            let d = q.backoff(attempts);
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "attempt {attempts}: {d}"
            );
        }
    }
}
