//! Replication driven through the core by hand: workers answer every run
//! (honest ones with the same physics and their own timings, a liar with
//! other physics); verification runs take only slots nothing queued could
//! use, are never recorded nor counted as attempts, and a liar is
//! quarantined by the majority and its results corrected.

use std::collections::VecDeque;

use serde_json::json;

use super::live::{Effects, LiveTasks, Outbound, RetryPolicy, Verifier};
use super::OutcomeKind;
use crate::model::{AttemptId, KernelName, RunStatus, TaskId, TaskResult, TaskStatus, WorkerId};
use crate::orchestrator::placement::MemberView;
use crate::orchestrator::store::{Change, CheckChange, NewTask};

fn view(id: &WorkerId, drained: bool) -> MemberView {
    MemberView {
        id: id.clone(),
        reachable: true,
        up: true,
        drain_reason: drained.then(|| "quarantined".to_string()),
        capacity: 1,
        kernels: vec![KernelName::resolve("reference").unwrap()],
        backlog_limit: 0,
        state_text: "up".into(),
    }
}

const PARAMETERS: &str = r#"{"num_particles": 16, "num_steps": 5, "seed": 1}"#;

/// A task whose body the workers echo.
fn task(id: &str) -> NewTask {
    NewTask::python(
        id,
        format!(r#"{{"task_id": "{id}", "algorithm": "python", "parameters": {PARAMETERS}}}"#),
    )
}

/// `worker`'s result: the physics says `energy`, the timing is its own.
fn result(task_id: &TaskId, energy: f64, worker: &WorkerId, run: u64) -> TaskResult {
    let metrics = json!({"particles_processed": 16, "steps_completed": 5,
        "total_energy_final": energy, "particle_steps_per_second": 1000.0 + run as f64,
        "threads": worker.as_str().len()});
    let mut r = TaskResult::for_test(
        task_id,
        serde_json::from_str(PARAMETERS).unwrap(),
        RunStatus::Completed,
        metrics,
    );
    r.execution_time = 0.1 + run as f64;
    r.result.output = "done".into();
    r
}

/// The core and the workers around it.
struct World {
    live: LiveTasks,
    workers: Vec<WorkerId>,
    liar: Option<WorkerId>,
    now: f64,
    runs: VecDeque<(WorkerId, TaskId, AttemptId)>,
    completions: Vec<(TaskId, WorkerId)>,
    quarantined: Vec<(WorkerId, String)>,
    corrected: Vec<TaskResult>,
    persisted_ends: Vec<(TaskId, Option<WorkerId>)>,
    answered: u64,
    /// Runs cancelled on their worker (worker, task).
    cancelled: Vec<(WorkerId, TaskId)>,
    /// The checks the database holds as waiting, as the core persisted
    /// them (task, answers, tries).
    stored: std::collections::BTreeMap<TaskId, (usize, u32)>,
}

impl World {
    fn new(fraction: f64, workers: usize, liar: Option<usize>) -> Self {
        let policy = RetryPolicy {
            max_retries: 2,
            base_seconds: 0.01,
            max_seconds: 0.05,
        };
        let mut live = LiveTasks::new(policy, 1, 7);
        live.verify = Verifier::new(fraction);
        let workers: Vec<WorkerId> = (0..workers).map(|i| WorkerId::new(&format!("w{i}"))).collect();
        live.roster(workers.iter().map(|w| view(w, false)).collect());
        Self {
            liar: liar.map(|i| workers[i].clone()),
            live,
            workers,
            now: 1000.0,
            runs: VecDeque::new(),
            completions: Vec::new(),
            quarantined: Vec::new(),
            corrected: Vec::new(),
            persisted_ends: Vec::new(),
            answered: 0,
            cancelled: Vec::new(),
            stored: Default::default(),
        }
    }

    fn absorb(&mut self, fx: Effects) {
        for s in fx.send {
            match s {
                Outbound::Run {
                    worker,
                    task_id,
                    attempt_id,
                    ..
                } => self.runs.push_back((worker, task_id, attempt_id)),
                Outbound::CancelOnWorker { worker, task_id } => {
                    // the worker stops it: no answer comes
                    self.runs.retain(|(w, t, _)| !(*w == worker && *t == task_id));
                    self.cancelled.push((worker, task_id));
                }
                _ => {}
            }
        }
        if let Some(c) = fx.completion {
            self.completions.push((c.task_id, c.worker));
        }
        for c in fx.persist {
            if let Change::Check(check) = &c {
                match check {
                    CheckChange::Waiting {
                        task_id,
                        votes,
                        tries,
                    } => {
                        self.stored.insert(task_id.clone(), (votes.len(), *tries));
                    }
                    CheckChange::Done { task_id } => {
                        assert!(self.stored.remove(task_id).is_some(), "{task_id} was stored");
                    }
                }
            }
            if let Change::Ended {
                task_id,
                status: TaskStatus::Completed,
                worker_id,
                ..
            } = c
            {
                self.persisted_ends.push((task_id, worker_id));
            }
        }
        self.corrected.extend(fx.corrected);
        if !fx.quarantine.is_empty() {
            self.quarantined.extend(fx.quarantine);
            // membership marks it suspect: drained
            let views = self
                .workers
                .iter()
                .map(|w| view(w, self.quarantined.iter().any(|(q, _)| q == w)))
                .collect();
            let fx = self.live.roster(views);
            self.absorb(fx);
        }
    }

    fn dispatch(&mut self) {
        let d = self.live.dispatch(16, self.now);
        self.absorb(d.fx);
    }

    fn submit(&mut self, ids: &[&str]) {
        let tasks: Vec<NewTask> = ids.iter().map(|id| task(id)).collect();
        let seqs = (0..tasks.len() as i64).map(|i| i + self.now as i64).collect();
        let fx = self.live.submitted(tasks, seqs, "api", self.now);
        self.absorb(fx);
    }

    /// The oldest run sent: the worker starts it and answers.
    fn answer_one(&mut self) -> bool {
        let Some((worker, task_id, attempt_id)) = self.runs.pop_front() else {
            return false;
        };
        self.now += 1.0;
        self.answered += 1;
        let fx = self.live.started(&task_id, attempt_id, self.now);
        self.absorb(fx);
        let energy = if Some(&worker) == self.liar.as_ref() {
            9.0
        } else {
            -1.5
        };
        let r = result(&task_id, energy, &worker, self.answered);
        let fx = self.live.outcome(
            &task_id,
            attempt_id,
            &worker,
            OutcomeKind::Result(Box::new(r)),
            self.now,
        );
        self.absorb(fx);
        true
    }

    /// Every run answered, dispatching after each, until nothing is sent.
    fn settle(&mut self) {
        self.dispatch();
        while self.answer_one() {
            self.dispatch();
        }
    }
}

#[test]
fn honest_workers_agree_and_nothing_is_recorded_twice_or_counted_as_an_attempt() {
    let mut w = World::new(1.0, 2, None);
    let ids: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    for id in &ids {
        w.submit(&[id]);
        w.settle();
    }
    assert_eq!(w.completions.len(), 6, "each result recorded once");
    let c = w.live.verify.counters;
    assert_eq!((c.runs, c.agreed, c.mismatches, c.quarantined), (6, 6, 0, 0));
    assert_eq!(w.live.counters.completed, 6);
    assert_eq!(w.live.counters.retried + w.live.counters.refused_attempts, 0);
    // a verification run persists nothing: the only ends are the
    // completions, which the actor commits itself
    assert!(w.persisted_ends.is_empty(), "{:?}", w.persisted_ends);
    assert!(w.corrected.is_empty() && w.quarantined.is_empty());
    // each check was persisted while it waited, and forgotten once decided
    assert!(w.stored.is_empty(), "{:?}", w.stored);
    // every slot given back
    for id in &w.workers {
        assert_eq!(w.live.loads.in_flight(id), 0);
    }
}

#[test]
fn a_verification_run_never_takes_a_slot_a_queued_task_could_use() {
    let mut w = World::new(1.0, 2, None);
    w.submit(&["first"]);
    w.dispatch();
    assert_eq!(w.runs.len(), 1);
    w.answer_one(); // completed: sampled
    assert_eq!(w.live.verify.waiting(), 1);
    // three queued tasks for two slots: both slots go to them
    w.submit(&["a", "b", "c"]);
    w.dispatch();
    assert_eq!(w.runs.len(), 2);
    assert!(
        w.runs.iter().all(|(_, t, _)| t.as_str() != "first"),
        "{:?}",
        w.runs
    );
    assert_eq!(w.live.verify.counters.runs, 0);
    w.settle();
    assert_eq!(w.completions.len(), 4);
    assert_eq!(
        w.live.verify.counters.runs, 4,
        "each verified once the queue was empty"
    );
}

#[test]
fn with_one_capable_worker_nothing_is_verified() {
    let mut w = World::new(1.0, 1, None);
    w.submit(&["a", "b"]);
    w.settle();
    assert_eq!(w.completions.len(), 2);
    assert_eq!(w.live.verify.counters.runs, 0);
    assert_eq!(w.live.verify.waiting(), 2, "they wait for another worker");
    // persisted: a restart finds them waiting
    let stored: Vec<&str> = w.stored.keys().map(TaskId::as_str).collect();
    assert_eq!(stored, ["a", "b"]);
    assert_eq!(w.live.verify.stats().waiting, 2);
}

#[test]
fn verification_is_off_at_zero() {
    let mut w = World::new(0.0, 3, Some(2));
    for i in 0..5 {
        w.submit(&[&format!("t{i}")]);
        w.settle();
    }
    assert_eq!(w.live.verify.counters.runs, 0);
    assert!(w.quarantined.is_empty());
}

#[test]
fn a_liar_is_quarantined_by_the_majority_and_its_results_corrected() {
    let mut w = World::new(1.0, 3, Some(2));
    let liar = WorkerId::new("w2");
    // three at once: one on each worker, the liar's among them
    w.submit(&["t0", "t1", "t2"]);
    w.settle();
    for i in 3..9 {
        w.submit(&[&format!("t{i}")]);
        w.settle();
    }
    assert_eq!(w.completions.len(), 9, "each task recorded once");
    assert_eq!(w.live.counters.retried + w.live.counters.refused_attempts, 0);
    assert_eq!(w.quarantined.len(), 1, "{:?}", w.quarantined);
    let (who, why) = &w.quarantined[0];
    assert_eq!(who, &liar);
    assert!(
        why.starts_with("quarantined: its result of task") && why.contains("differs"),
        "{why}"
    );
    assert_eq!(w.live.verify.quarantined(&liar), Some(why.as_str()));
    // every result the liar recorded was replaced by an honest run
    let by_liar: Vec<&TaskId> = w
        .completions
        .iter()
        .filter(|(_, by)| *by == liar)
        .map(|(t, _)| t)
        .collect();
    assert!(!by_liar.is_empty(), "round robin gave the liar work");
    for t in &by_liar {
        let fixed = w
            .corrected
            .iter()
            .find(|r| &r.task_id == *t)
            .unwrap_or_else(|| panic!("{t} not corrected"));
        assert_ne!(fixed.worker_id.as_ref(), Some(&liar));
        assert_eq!(fixed.result.metrics["total_energy_final"], -1.5);
        assert_eq!(fixed.extra.get("corrected_from"), Some(&json!("w2")));
        assert!(w
            .persisted_ends
            .iter()
            .any(|(id, by)| id == *t && by.as_ref() != Some(&liar)));
    }
    let fixed: Vec<&TaskId> = w.corrected.iter().map(|r| &r.task_id).collect();
    assert_eq!(
        fixed.len(),
        by_liar.len(),
        "each once, no honest one: {fixed:?} {by_liar:?}"
    );
    // after the quarantine the liar gets nothing: new tasks go elsewhere
    let before = w.completions.len();
    w.submit(&["after"]);
    w.settle();
    assert!(w.completions[before..].iter().all(|(_, by)| *by != liar));
    // a resume lifts it in the core too; only once
    assert!(w.live.verify.lift(&liar));
    assert_eq!(w.live.verify.quarantined(&liar), None);
    assert!(!w.live.verify.lift(&liar));
}

#[test]
fn a_verification_run_gives_its_slot_up_as_soon_as_work_could_use_it() {
    let mut w = World::new(1.0, 2, None);
    let first = TaskId::trusted("first");
    w.submit(&["first"]);
    w.dispatch();
    w.answer_one(); // completed on one worker: sampled
    w.dispatch();
    assert_eq!(
        w.live.verify.counters.runs, 1,
        "verified on the other, idle worker"
    );
    // more work than slots arrives, again and again while it is verified:
    // each time the run is cancelled there, its slot is freed for the
    // work, and the check waits again without losing one of its tries
    for round in 0..4 {
        let verifier = w
            .runs
            .iter()
            .find(|(_, t, _)| *t == first)
            .map(|(on, _, _)| on.clone())
            .unwrap_or_else(|| panic!("round {round}: first is verified: {:?}", w.runs));
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        w.submit(&[&a, &b]);
        w.dispatch();
        assert!(
            w.cancelled.contains(&(verifier.clone(), first.clone())),
            "round {round}: the verification run is withdrawn: {:?}",
            w.cancelled
        );
        assert!(w.runs.iter().all(|(_, t, _)| *t != first));
        assert!(w.live.verify.counters.withdrawn > round);
        // the actor dispatches again on the slots freed: the work takes them
        w.dispatch();
        let sent: Vec<&str> = w.runs.iter().map(|(_, t, _)| t.as_str()).collect();
        assert!(
            sent.contains(&a.as_str()) && sent.contains(&b.as_str()),
            "round {round}: {sent:?}"
        );
        w.cancelled.clear();
        // everything else answered: the slots free up and the check of
        // first runs again
        while w.runs.iter().any(|(_, t, _)| *t != first) {
            let at = w.runs.iter().position(|(_, t, _)| *t != first).unwrap();
            let other = w.runs.remove(at).unwrap();
            w.runs.push_front(other);
            w.answer_one();
            w.dispatch();
        }
    }
    w.settle();
    let c = w.live.verify.counters;
    assert_eq!(w.completions.len(), 9, "each task recorded once");
    assert_eq!(c.agreed, 9, "first too, after four withdrawals: {c:?}");
    assert!(w.stored.is_empty(), "{:?}", w.stored);
    assert_eq!(w.live.counters.retried + w.live.counters.refused_attempts, 0);
    for id in &w.workers {
        assert_eq!(w.live.loads.in_flight(id), 0);
    }
}

#[test]
fn a_task_sent_ahead_behind_a_verification_run_has_it_withdrawn() {
    let mut w = World::new(1.0, 2, None);
    w.submit(&["first"]);
    w.dispatch();
    w.answer_one();
    w.dispatch();
    let (verifier, _, _) = w.runs.front().expect("the verification run").clone();
    // the other worker fails: its tasks can only go to the verifier
    let views = w
        .workers
        .iter()
        .map(|id| {
            let mut v = view(id, false);
            v.reachable = *id == verifier;
            v.backlog_limit = 4;
            v
        })
        .collect();
    let fx = w.live.roster(views);
    w.absorb(fx);
    w.submit(&["next"]);
    w.dispatch();
    assert!(
        w.cancelled
            .contains(&(verifier.clone(), TaskId::trusted("first"))),
        "{:?}",
        w.cancelled
    );
    assert!(w
        .runs
        .iter()
        .any(|(on, t, _)| *on == verifier && t.as_str() == "next"));
}
