//! What LiveTasks tells the Prometheus counters ([`Observed`] effects,
//! handed over as the actor does): each event counted once where it
//! happens (ingested, queue wait, completed, late result, retried, failed,
//! refused, cancelled with or without a known kernel).

use super::live::{Effects, LiveTasks, Observed, Outbound, RetryPolicy};
use super::live_tests::result;
use super::OutcomeKind;
use crate::model::{AttemptId, RunStatus, TaskStatus, WorkerId};
use crate::orchestrator::activity::Activity;
use crate::orchestrator::metrics::{ClusterView, OrchestratorMetrics};
use crate::orchestrator::store::{CancelOutcome, NewTask};
use crate::util::prometheus::sample_value;

fn task(id: &str) -> NewTask {
    NewTask::python(id, r#"{"parameters":{}}"#)
}

/// Places `task_id` on `w` and answers the attempt id it was sent with.
fn place(live: &mut LiveTasks, task_id: &str, w: &WorkerId) -> AttemptId {
    let taken = live.take_batch(1);
    assert_eq!(taken[0].0, task_id);
    let fx = live.placed(task_id, Some(w.clone()));
    fx.send
        .iter()
        .find_map(|s| match s {
            Outbound::Run { attempt_id, .. } => Some(*attempt_id),
            _ => None,
        })
        .expect("a placed task is sent")
}

#[test]
fn each_event_is_counted_once_where_it_happens() {
    let metrics = OrchestratorMetrics::new();
    let mut seen = Effects::default();
    let mut live = LiveTasks::new(
        RetryPolicy {
            max_retries: 1,
            base_seconds: 0.01,
            max_seconds: 0.01,
        },
        1,
        7,
    );
    let w = WorkerId::new("w1");
    let now = 1_000.0;
    let ids = ["t1", "t2", "t3", "t4"];
    seen.merge(live.submitted(
        ids.iter().map(|id| task(id)).collect(),
        vec![1, 2, 3, 4],
        "api",
        now,
    ));
    let attempt: Vec<AttemptId> = ids.iter().map(|id| place(&mut live, id, &w)).collect();
    for (id, a) in ids.iter().zip(&attempt).take(3) {
        seen.merge(live.started(&(*id).into(), *a, now + 2.0));
    }
    // t1 completes; the same result again is late
    let done = || OutcomeKind::Result(Box::new(result("t1", RunStatus::Completed)));
    seen.merge(live.outcome(&"t1".into(), attempt[0], &w, done(), now + 3.0));
    seen.merge(live.outcome(&"t1".into(), attempt[0], &w, done(), now + 3.0));
    // t2 fails, is retried, fails again: failed for good
    seen.merge(live.outcome(
        &"t2".into(),
        attempt[1],
        &w,
        OutcomeKind::Failed("boom".into()),
        now + 3.0,
    ));
    live.backoff_expired(now + 10.0);
    let again = place(&mut live, "t2", &w);
    seen.merge(live.started(&"t2".into(), again, now + 11.0));
    seen.merge(live.outcome(
        &"t2".into(),
        again,
        &w,
        OutcomeKind::Failed("boom".into()),
        now + 12.0,
    ));
    // t4, sent ahead, is handed back: a refusal
    seen.merge(live.outcome(
        &"t4".into(),
        attempt[3],
        &w,
        OutcomeKind::Refused("429".into()),
        now + 3.0,
    ));
    // t3 (running) is cancelled, and so is a task only in the database
    let cancelled = CancelOutcome::Cancelled {
        was: TaskStatus::Running,
        worker_id: Some("w1".into()),
    };
    for id in ["t3", "on_disk"] {
        live.cancel_asked(&id.into());
        seen.merge(live.cancel_answered(&id.into(), Some(&cancelled)));
    }

    // the actor hands them over
    let activity = Activity::default();
    for o in &seen.observed {
        o.tell(&metrics, &activity);
    }
    assert!(seen.observed.contains(&Observed::Refused));
    let text = metrics
        .render(&ClusterView {
            tasks: &[],
            workers: &[],
        })
        .unwrap();
    let v = |s: &str| sample_value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(v("orquesta_tasks_ingested_total"), 4.0);
    assert_eq!(
        v(r#"orquesta_tasks_ended_total{outcome="completed",kernel="reference"}"#),
        1.0
    );
    assert_eq!(
        v(r#"orquesta_tasks_ended_total{outcome="failed",kernel="reference"}"#),
        1.0
    );
    assert_eq!(
        v(r#"orquesta_tasks_ended_total{outcome="cancelled",kernel="reference"}"#),
        1.0
    );
    assert_eq!(
        v(r#"orquesta_tasks_ended_total{outcome="cancelled",kernel="unknown"}"#),
        1.0
    );
    assert_eq!(v("orquesta_late_results_total"), 1.0);
    assert_eq!(v("orquesta_task_retries_total"), 1.0);
    assert_eq!(v("orquesta_refusals_total"), 1.0);
    // one wait per attempt that started: t1, t2 twice, t3
    assert_eq!(
        v(r#"orquesta_task_queue_wait_seconds_count{kernel="reference"}"#),
        4.0
    );
    assert_eq!(
        v(r#"orquesta_task_queue_wait_seconds_sum{kernel="reference"}"#),
        2.0 * 3.0 + 11.0
    );
    // the worker's execution time (0.25 s) of the one completed task
    assert_eq!(
        v(r#"orquesta_task_execution_seconds_count{kernel="reference"}"#),
        1.0
    );
    assert_eq!(
        v(r#"orquesta_task_execution_seconds_sum{kernel="reference"}"#),
        0.25
    );
    // the /stats counters saw the same events
    let c = &live.counters;
    assert_eq!((c.completed, c.failed, c.cancelled, c.retried), (1, 1, 2, 1));
    assert_eq!((c.late_results_ignored, c.refused_attempts), (1, 1));
}
