//! A task's size travels with it: read from its JSON once, when it comes
//! into memory (with its parameters and the fields its result echoes),
//! handed to placement with the task and back with its release (what
//! `shortest_expected_finish` learns speeds from).

use serde_json::json;

use super::entry::body_size;
use super::live::{Freed, LiveTasks, Outbound, RetryPolicy};
use super::OutcomeKind;
use crate::model::{RunStatus, TaskResult, WorkerId};
use crate::orchestrator::placement::TaskSize;
use crate::orchestrator::store::NewTask;

fn live_with(id: &str, priority: u8) -> LiveTasks {
    let mut live = LiveTasks::new(
        RetryPolicy {
            max_retries: 1,
            base_seconds: 0.05,
            max_seconds: 0.5,
        },
        1,
        7,
    );
    let body = json!({"task_id": id, "algorithm": "cython", "priority": "medium",
        "parameters": {"num_particles": 1200, "num_steps": 300, "seed": 1}});
    live.submitted(
        vec![NewTask {
            task_id: id.into(),
            priority: crate::model::Priority::from_rank(priority),
            algorithm: "cython".into(),
            kernel: "optimized".into(),
            body: body.to_string(),
            reuse_key: None,
        }],
        vec![1],
        "api",
        0.0,
    );
    live
}

/// Dispatches the only task onto `w`; answers its attempt id.
fn run_on(live: &mut LiveTasks, w: &WorkerId) -> crate::model::AttemptId {
    let batch = live.take_batch(8);
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].1.size, batch[0].1.priority.rank()), ((1200, 300), 2));
    let fx = live.placed(&batch[0].0, Some(w.clone()));
    fx.send
        .iter()
        .find_map(|s| match s {
            Outbound::Run { attempt_id, .. } => Some(*attempt_id),
            _ => None,
        })
        .expect("the placed task runs")
}

fn released(fx: &super::live::Effects) -> (Freed, Option<TaskSize>) {
    fx.released
        .iter()
        .map(|(_, freed, size)| (*freed, *size))
        .next()
        .expect("the attempt's slot is released")
}

/// The task's size, as `live_with` queues it.
fn size() -> TaskSize {
    TaskSize {
        kernel: "optimized".into(),
        particles: 1200,
        steps: 300,
    }
}

#[test]
fn body_size_reads_n_and_steps_and_gives_zero_without_them() {
    let body = r#"{"task_id":"a","parameters":{"num_particles":500,"num_steps":2000,"seed":3,"dt":0.001}}"#;
    assert_eq!(body_size(body), (500, 2000));
    assert_eq!(
        body_size(r#"{"task_id":"s","algorithm":"__sleep","parameters":{"seconds":1}}"#),
        (0, 0)
    );
    assert_eq!(body_size(r#"{"task_id":"x"}"#), (0, 0));
    assert_eq!(body_size("not json"), (0, 0));
}

#[test]
fn a_failed_attempt_releases_its_slot_with_the_tasks_size() {
    let w = WorkerId::new("w1");
    let mut live = live_with("t1", 2);
    let attempt = run_on(&mut live, &w);
    let fx = live.outcome(&"t1".into(), attempt, &w, OutcomeKind::Failed("boom".into()), 1.0);
    assert_eq!(released(&fx), (Freed::Failed, Some(size())));
}

#[test]
fn a_completed_attempt_releases_its_slot_with_its_time_and_the_tasks_size() {
    let w = WorkerId::new("w1");
    let mut live = live_with("t1", 2);
    let attempt = run_on(&mut live, &w);
    let result = TaskResult {
        algorithm: "cython".into(),
        parameters: json!({"num_particles": 1200, "num_steps": 300, "seed": 1}),
        execution_time: 0.75,
        ..super::live_tests::result("t1", RunStatus::Completed)
    };
    let fx = live.outcome(
        &"t1".into(),
        attempt,
        &w,
        OutcomeKind::Result(Box::new(result)),
        1.0,
    );
    assert_eq!(released(&fx), (Freed::Completed { seconds: 0.75 }, Some(size())));
}

#[test]
fn size_parameters_and_echoed_fields_are_read_once_when_the_task_comes_into_memory() {
    let mut live = live_with("t1", 2);
    let entry = &live.tasks["t1"].entry;
    assert_eq!(entry.size, (1200, 300), "known before any dispatch");
    // the same parameters in another key order share the fingerprint
    assert_eq!(
        entry.parameters,
        Some(super::entry::fingerprint(
            &json!({"seed": 1, "num_steps": 300, "num_particles": 1200})
        ))
    );
    // what the result echoes comes from the entry, not from the body
    // parsed again: a body the entry no longer matches changes nothing
    live.tasks.get_mut("t1").unwrap().entry.body = "not json".into();
    let w = WorkerId::new("w1");
    let attempt = run_on(&mut live, &w);
    let result = TaskResult {
        algorithm: "cython".into(),
        parameters: json!({"num_particles": 1200, "num_steps": 300, "seed": 1}),
        ..super::live_tests::result("t1", RunStatus::Completed)
    };
    let fx = live.outcome(
        &"t1".into(),
        attempt,
        &w,
        OutcomeKind::Result(Box::new(result)),
        1.0,
    );
    assert!(fx.completion.is_some(), "its parameters were kept from ingest");
}

#[test]
fn fingerprints_are_equal_exactly_when_the_values_are() {
    use super::entry::fingerprint;
    let same = [
        (json!({"a": 1, "b": [1.5, "x"]}), json!({"b": [1.5, "x"], "a": 1})),
        (json!(null), json!(null)),
    ];
    for (x, y) in same {
        assert_eq!(x, y);
        assert_eq!(fingerprint(&x), fingerprint(&y), "{x} {y}");
    }
    let other = [
        (json!({"n": 1}), json!({"n": 1.0})),
        (json!({"n": 1}), json!({"n": 2})),
        (json!({"n": 1}), json!({"m": 1})),
        (json!([1, 2]), json!([2, 1])),
        (json!(["ab"]), json!(["a", "b"])),
        (json!({"n": "1"}), json!({"n": 1})),
    ];
    for (x, y) in other {
        assert_ne!(x, y);
        assert_ne!(fingerprint(&x), fingerprint(&y), "{x} {y}");
    }
}
