//! LiveTasks driven event by event, by hand and by proptest, with a model
//! of membership (workers that drain, go down, change capacity, leave and
//! come back) and of the database's statuses around it: any sequence of
//! events keeps the invariants, placement's among them (no task on a
//! worker that takes none or is full, a failed worker avoided while
//! another can take the task, every slot accounted for, every draining
//! worker told idle once it holds nothing).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::json;

use super::live::{delayed_key, Effects, Freed, LiveTasks, Outbound, Place, RetryPolicy, Sample, TaskState};
use super::OutcomeKind;
use crate::model::{AttemptEnd, AttemptId, Priority, RunStatus, TaskId, TaskResult, TaskStatus, WorkerId};
use crate::orchestrator::placement::MemberView;
use crate::orchestrator::store::{CancelOutcome, Change, NewTask, QueuedRow};

const CAPACITY: [usize; 3] = [1, 2, 3];

fn worker(i: usize) -> WorkerId {
    WorkerId::new(&format!("w{i}"))
}

/// A worker's result for `task_id` (a python task with no parameters).
pub(super) fn result(task_id: &str, status: RunStatus) -> TaskResult {
    let mut r = TaskResult::for_test(&task_id.into(), json!({}), status, json!({}));
    r.result.output = "out".into();
    r
}

/// A completed result for other parameters than the task's.
fn forged(task_id: &str) -> TaskResult {
    TaskResult {
        parameters: json!({"num_particles": 7}),
        ..result(task_id, RunStatus::Completed)
    }
}

#[derive(Debug, Clone)]
enum Event {
    Submit {
        count: usize,
        priority: u8,
    },
    /// A batch is placed and sent.
    Dispatch {
        max: usize,
    },
    /// Membership changes worker `worker` (see [`Model::member`]).
    Member {
        worker: usize,
        change: u8,
    },
    /// The worker says an issued attempt took a slot.
    Started {
        pick: usize,
    },
    Outcome {
        pick: usize,
        kind: u8,
    },
    CancelAsk {
        pick: usize,
    },
    CancelAnswer,
    Retry {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
    /// A worker answers a take-back: 0 given back, 1 it started after
    /// all, 2 not there (one that started always answers started).
    TakeBackAnswer {
        pick: usize,
        outcome: u8,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (1usize..4, 0u8..3).prop_map(|(count, priority)| Event::Submit { count, priority }),
        4 => (1usize..6).prop_map(|max| Event::Dispatch { max }),
        2 => (0usize..3, 0u8..6).prop_map(|(worker, change)| Event::Member { worker, change }),
        3 => (0usize..64).prop_map(|pick| Event::Started { pick }),
        4 => (0usize..64, 0u8..9).prop_map(|(pick, kind)| Event::Outcome { pick, kind }),
        1 => (0usize..64).prop_map(|pick| Event::CancelAsk { pick }),
        1 => Just(Event::CancelAnswer),
        1 => (0usize..64).prop_map(|pick| Event::Retry { pick }),
        1 => (1u64..80).prop_map(|ms| Event::Advance { ms }),
        3 => (0usize..64, 0u8..3).prop_map(|(pick, outcome)| Event::TakeBackAnswer { pick, outcome }),
    ]
}

/// The world around LiveTasks.
struct Model {
    live: LiveTasks,
    now: f64,
    tasks: Vec<(NewTask, i64)>,
    /// The database's status of each task.
    status: HashMap<TaskId, TaskStatus>,
    /// Each worker as membership lists it (`None`: left).
    members: [Option<MemberView>; 3],
    /// Draining workers the core said were idle since their drain began.
    told_idle: HashSet<WorkerId>,
    /// Every attempt issued: (task, attempt id, worker).
    issued: Vec<(TaskId, AttemptId, WorkerId)>,
    /// The open attempt of each task.
    open: HashMap<TaskId, AttemptId>,
    /// Attempts persisted as started (the worker took them into a slot).
    started: HashSet<AttemptId>,
    pending_cancels: Vec<TaskId>,
    /// The workers an attempt of each task failed on or was lost with:
    /// what its placements must ask the Membership to avoid.
    failed_on: HashMap<TaskId, Vec<WorkerId>>,
    /// Take-backs asked and not answered yet: (task, attempt, worker).
    asked_back: Vec<(TaskId, AttemptId, WorkerId)>,
}

impl Model {
    fn new() -> Self {
        let policy = RetryPolicy {
            max_retries: 2,
            base_seconds: 0.01,
            max_seconds: 0.05,
        };
        let mut m = Self {
            live: LiveTasks::new(policy, 1, 7),
            now: 1_000.0,
            tasks: Vec::new(),
            status: HashMap::new(),
            members: [0, 1, 2].map(|i| Some(Self::view(i))),
            told_idle: HashSet::new(),
            issued: Vec::new(),
            open: HashMap::new(),
            started: HashSet::new(),
            pending_cancels: Vec::new(),
            failed_on: HashMap::new(),
            asked_back: Vec::new(),
        };
        m.roster();
        m
    }

    fn task_id(&self, pick: usize) -> Option<TaskId> {
        (!self.tasks.is_empty()).then(|| self.tasks[pick % self.tasks.len()].0.task_id.clone())
    }

    fn ended(&self, id: &str) -> bool {
        self.status.get(id).is_some_and(|s| s.has_ended())
    }

    /// Checks what an event asked for, then applies it to the model.
    fn effects(&mut self, fx: Effects) {
        for c in &fx.persist {
            let id = match c {
                Change::AttemptStarted { task_id, .. }
                | Change::Requeue { task_id, .. }
                | Change::Ended { task_id, .. } => Some(task_id),
                _ => None,
            };
            if let Some(id) = id {
                assert!(!self.ended(id), "an ended task changed: {c:?}");
            }
            match c {
                Change::AttemptStarted {
                    task_id, attempt_id, ..
                } => {
                    assert_eq!(
                        self.open.get(task_id),
                        Some(attempt_id),
                        "a started attempt is the open one"
                    );
                    assert!(
                        self.started.insert(*attempt_id),
                        "attempt {attempt_id} started twice"
                    );
                    self.status.insert(task_id.clone(), TaskStatus::Running);
                }
                Change::Requeue { task_id, .. } => {
                    self.status.insert(task_id.clone(), TaskStatus::Queued);
                }
                Change::Ended { task_id, status, .. } => {
                    self.status.insert(task_id.clone(), *status);
                }
                Change::AttemptEnded { attempt_id, .. } => {
                    self.open.retain(|_, a| a != attempt_id);
                }
                _ => {}
            }
        }
        for s in &fx.send {
            match s {
                Outbound::Run {
                    worker,
                    task_id,
                    attempt_id,
                    ..
                } => {
                    assert!(!self.ended(task_id), "an ended task runs again");
                    let prev = self.open.insert(task_id.clone(), *attempt_id);
                    assert_eq!(prev, None, "two open attempts of {task_id}");
                    self.issued.push((task_id.clone(), *attempt_id, worker.clone()));
                }
                Outbound::CancelOnWorker { task_id, .. } => {
                    self.open.remove(task_id);
                }
                Outbound::TakeBack {
                    worker,
                    task_id,
                    attempt_id,
                } => {
                    // only an attempt sent ahead that has not started is
                    // asked back, from the worker it was sent to
                    assert_eq!(self.open.get(task_id), Some(attempt_id), "{task_id} asked back");
                    assert!(
                        !self.started.contains(attempt_id),
                        "{task_id} asked back after it started"
                    );
                    assert!(
                        self.issued
                            .contains(&(task_id.clone(), *attempt_id, worker.clone())),
                        "{task_id} asked back from {worker}, where it was not sent"
                    );
                    self.asked_back
                        .push((task_id.clone(), *attempt_id, worker.clone()));
                }
                _ => {}
            }
        }
        for w in &fx.idle {
            assert_eq!(
                self.live.loads.in_flight(w),
                0,
                "{w} told idle while it holds attempts"
            );
            self.told_idle.insert(w.clone());
        }
        if let Some(c) = &fx.completion {
            assert!(!self.ended(&c.task_id), "a result recorded twice");
            self.status.insert(c.task_id.clone(), TaskStatus::Completed);
            self.open.remove(&c.task_id);
        }
    }

    fn step(&mut self, e: Event) {
        match e {
            Event::Submit { count, priority } => {
                let mut new = Vec::new();
                let mut seqs = Vec::new();
                for _ in 0..count {
                    let seq = self.tasks.len() as i64 + 1;
                    let t = NewTask {
                        task_id: format!("t{seq}").into(),
                        priority: Priority::from_rank(priority),
                        algorithm: "python".into(),
                        kernel: "reference".into(),
                        body: r#"{"parameters":{}}"#.into(),
                        reuse_key: None,
                    };
                    self.status.insert(t.task_id.clone(), TaskStatus::Queued);
                    self.tasks.push((t.clone(), seq));
                    new.push(t);
                    seqs.push(seq);
                }
                self.live.submitted(new, seqs, "api", self.now);
            }
            Event::Dispatch { max } => self.dispatch(max),
            Event::Member { worker, change } => self.member(worker, change),
            Event::Started { pick } => {
                if self.issued.is_empty() {
                    return;
                }
                let (task_id, attempt_id, _) = self.issued[pick % self.issued.len()].clone();
                let fx = self.live.started(&task_id, attempt_id, self.now);
                self.effects(fx);
            }
            Event::Outcome { pick, kind } => {
                if self.issued.is_empty() {
                    return;
                }
                let (task_id, attempt_id, w) = self.issued[pick % self.issued.len()].clone();
                let current =
                    self.open.get(&task_id) == Some(&attempt_id) && !self.pending_cancels.contains(&task_id);
                let sent_ahead = current && !self.started.contains(&attempt_id);
                if current && matches!(kind, 2 | 3 | 4 | 6 | 7 | 8) {
                    let seen = self.failed_on.entry(task_id.clone()).or_default();
                    if !seen.contains(&w) {
                        seen.push(w.clone());
                    }
                }
                let kind = match kind {
                    0 | 1 => OutcomeKind::Result(Box::new(result(&task_id, RunStatus::Completed))),
                    2 => OutcomeKind::Result(Box::new(result(&task_id, RunStatus::Failed))),
                    3 => OutcomeKind::Result(Box::new(result(&task_id, RunStatus::Cancelled))),
                    4 => OutcomeKind::Lost("gone".into()),
                    5 => OutcomeKind::Refused("full".into()),
                    6 => OutcomeKind::TimedOut("slow".into()),
                    7 => OutcomeKind::Result(Box::new(forged(&task_id))),
                    _ => OutcomeKind::Broken("silent".into()),
                };
                let refused = matches!(kind, OutcomeKind::Refused(_));
                let fx = self.live.outcome(&task_id, attempt_id, &w, kind, self.now);
                if sent_ahead && refused {
                    // handed back before it started: nothing was persisted
                    assert!(fx.persist.is_empty(), "{:?}", fx.persist);
                    self.open.remove(&task_id);
                }
                self.effects(fx);
            }
            Event::CancelAsk { pick } => {
                if let Some(id) = self.task_id(pick) {
                    if !self.pending_cancels.contains(&id) {
                        self.live.cancel_asked(&id);
                        self.pending_cancels.push(id);
                    }
                }
            }
            Event::CancelAnswer => {
                if self.pending_cancels.is_empty() {
                    return;
                }
                let id = self.pending_cancels.remove(0);
                // the database decides
                let outcome = match self.status[&id] {
                    s if s.has_ended() => CancelOutcome::AlreadyEnded { status: s },
                    was => {
                        self.status.insert(id.clone(), TaskStatus::Cancelled);
                        CancelOutcome::Cancelled { was, worker_id: None }
                    }
                };
                let fx = self.live.cancel_answered(&id, Some(&outcome));
                self.effects(fx);
            }
            Event::Retry { pick } => {
                let Some(id) = self.task_id(pick) else { return };
                if !self.status[&id].is_retryable() || self.pending_cancels.contains(&id) {
                    return;
                }
                self.status.insert(id.clone(), TaskStatus::Queued);
                self.failed_on.remove(&id);
                let (t, seq) = self.tasks.iter().find(|(t, _)| t.task_id == id).cloned().unwrap();
                self.live.retried(QueuedRow {
                    seq,
                    task_id: t.task_id,
                    priority: t.priority,
                    kernel: Some(t.kernel),
                    algorithm: t.algorithm,
                    body: t.body,
                    attempts: 0,
                    next_attempt_at: None,
                    created_at: self.now,
                    source: "api".into(),
                });
            }
            Event::Advance { ms } => {
                self.now += ms as f64 / 1000.0;
                self.live.backoff_expired(self.now);
            }
            Event::TakeBackAnswer { pick, outcome } => self.take_back_answer(pick, outcome),
        }
    }

    fn check(&self) {
        let l = &self.live;
        // the indexes agree with the map: each id listed once, in the
        // index of its state, under its own key
        let mut listed: HashSet<&TaskId> = HashSet::new();
        for (kernel, q) in &l.index.queues {
            for (key, id) in &q.ready {
                assert!(listed.insert(id), "{id} is in two places");
                let t = &l.tasks[id];
                assert_eq!(t.state, TaskState::Ready, "{id} queued while {:?}", t.state);
                assert_eq!((t.entry.key(), t.entry.kernel), (*key, *kernel));
                assert_eq!(l.place_of(id), Some(Place::Ready));
            }
        }
        for (key, id) in &l.index.delayed {
            assert!(listed.insert(id), "{id} is in two places");
            let t = &l.tasks[id];
            let TaskState::Delayed { until } = t.state else {
                panic!("{id} backing off while {:?}", t.state);
            };
            assert_eq!(delayed_key(until, t.entry.seq), *key);
            assert_eq!(l.place_of(id), Some(Place::Delayed(until)));
        }
        let mut parked = 0;
        for (id, t) in &l.tasks {
            assert_eq!(&t.entry.task_id, id);
            match &t.state {
                TaskState::Ready | TaskState::Delayed { .. } => {
                    assert!(listed.contains(id), "{id} is {:?} but not in its index", t.state)
                }
                TaskState::Placing => panic!("{id} is still being placed between events"),
                TaskState::SentAhead { .. } | TaskState::Running { .. } | TaskState::TakingBack { .. } => {
                    assert_eq!(l.place_of(id), Some(Place::Running))
                }
                TaskState::Parked => {
                    parked += 1;
                    assert!(l.cancelling.contains(id), "{id} parked with no cancel pending");
                    assert_eq!(l.place_of(id), None, "it cannot start meanwhile");
                }
            }
        }
        assert_eq!(parked, l.index.parked, "parked tasks miscounted");
        // the per-worker index agrees with the map
        let mut on: HashMap<WorkerId, super::live::OnWorker> = HashMap::new();
        for (id, t) in &l.tasks {
            match &t.state {
                TaskState::SentAhead { worker, .. } => {
                    on.entry(worker.clone())
                        .or_default()
                        .sent_ahead
                        .insert(t.entry.key(), id.clone());
                }
                TaskState::Running { worker, .. } => on.entry(worker.clone()).or_default().running += 1,
                TaskState::TakingBack { worker, to, .. } => {
                    on.entry(worker.clone())
                        .or_default()
                        .taking_back
                        .insert(t.entry.key(), id.clone());
                    if let Some(to) = to {
                        on.entry(to.clone()).or_default().incoming += 1;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(on, l.index.workers, "the per-worker index disagrees with the map");
        let mut ahead = [0usize; 3];
        for t in l.tasks.values() {
            if matches!(
                t.state,
                TaskState::SentAhead { .. } | TaskState::TakingBack { .. }
            ) {
                ahead[t.entry.priority as usize] += 1;
            }
        }
        assert_eq!(
            ahead, l.index.ahead_by_priority,
            "sent ahead miscounted by priority"
        );
        let pending: HashSet<&TaskId> = self.pending_cancels.iter().collect();
        assert_eq!(l.cancelling.iter().collect::<HashSet<_>>(), pending);
        let in_db = l.index.queues.values().any(|q| q.more_in_db);
        assert_eq!(l.live_count(), l.tasks.len() - parked + usize::from(in_db));
        // running ⇔ an open attempt, the same one
        let open: HashMap<&str, AttemptId> = self.open.iter().map(|(t, a)| (t.as_str(), *a)).collect();
        let attempts: HashMap<&str, AttemptId> = l.attempts().map(|(t, _, a, _)| (t.as_str(), a)).collect();
        assert_eq!(open, attempts, "running and open attempts disagree");
        // the database says running exactly for attempts that started;
        // one only sent ahead is still queued there
        for (t, _, attempt_id, started) in l.attempts() {
            let db = self.status[t.as_str()];
            assert_eq!(
                db == TaskStatus::Running,
                started,
                "{t}: database {db}, started {started}"
            );
            assert_eq!(started, self.started.contains(&attempt_id));
        }
        // every slot accounted for: a listed worker holds exactly the
        // attempts that run on it; a draining one that holds nothing was
        // told idle (membership settles it)
        for v in self.members.iter().flatten() {
            let on = l.attempts().filter(|(_, w, _, _)| **w == v.id).count();
            assert_eq!(l.loads.in_flight(&v.id), on, "slots of {}", v.id);
            if v.draining() && on == 0 {
                assert!(self.told_idle.contains(&v.id), "{} idle and never told", v.id);
            }
        }
        // ended tasks are not in memory
        for (id, s) in &self.status {
            if s.has_ended() {
                assert_eq!(l.place_of(id), None, "{id} ended ({s}) but is live");
                assert!(l.state_of(id).is_none(), "{id} ended ({s}) but is in memory");
            }
        }
    }
}

#[test]
fn a_task_runs_fails_retries_and_completes() {
    let mut m = Model::new();
    m.step(Event::Submit {
        count: 1,
        priority: 1,
    });
    m.step(Event::Dispatch { max: 4 });
    assert_eq!(m.live.place_of("t1"), Some(Place::Running));
    m.step(Event::Outcome { pick: 0, kind: 6 }); // timed out
    assert!(matches!(m.live.place_of("t1"), Some(Place::Delayed(_))));
    assert_eq!(m.live.counters.retried, 1);
    m.step(Event::Advance { ms: 100 });
    assert_eq!(m.live.place_of("t1"), Some(Place::Ready));
    m.step(Event::Dispatch { max: 4 });
    m.step(Event::Outcome { pick: 1, kind: 0 });
    assert_eq!(m.status["t1"], TaskStatus::Completed);
    assert_eq!(m.live.live_count(), 0);
    // the first attempt's late result is only counted
    m.step(Event::Outcome { pick: 0, kind: 0 });
    assert_eq!(m.live.counters.late_results_ignored, 1);
    m.check();
}

#[test]
fn a_cancel_parks_a_queued_task_and_puts_it_back_when_refused() {
    let mut m = Model::new();
    m.step(Event::Submit {
        count: 2,
        priority: 1,
    });
    m.live.cancel_asked(&"t1".into());
    assert_eq!(m.live.place_of("t1"), None, "it cannot start meanwhile");
    assert_eq!(m.live.take_batch(10).len(), 1);
    let fx = m.live.cancel_answered(&"t1".into(), None);
    assert!(fx.send.is_empty());
    assert_eq!(m.live.place_of("t1"), Some(Place::Ready));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of events keeps the invariants.
    #[test]
    fn any_sequence_of_events_keeps_the_invariants(events in prop::collection::vec(event(), 1..80)) {
        let mut m = Model::new();
        for e in events {
            m.step(e);
            m.check();
        }
    }
}

#[test]
fn a_result_for_other_parameters_or_another_algorithm_is_never_recorded() {
    let mut m = Model::new();
    m.step(Event::Submit {
        count: 1,
        priority: 0,
    });
    m.step(Event::Dispatch { max: 1 });
    let task_id = m.issued[0].0.clone();
    let (attempt_id, w) = (m.issued[0].1, m.issued[0].2.clone());
    let other_algorithm = TaskResult {
        algorithm: "cython".into(),
        ..result(&task_id, RunStatus::Completed)
    };
    let fx = m.live.outcome(
        &task_id,
        attempt_id,
        &w,
        OutcomeKind::Result(Box::new(other_algorithm)),
        m.now,
    );
    assert!(fx.completion.is_none(), "a forged result is never recorded");
    assert!(fx.persist.iter().any(|c| matches!(c,
        Change::AttemptEnded { end: crate::model::AttemptEnd::Lost, error: Some(e), .. } if e.contains("forged"))));
    m.failed_on.entry(task_id.clone()).or_default().push(w);
    m.effects(fx);
    assert!(matches!(m.live.place_of(&task_id), Some(Place::Delayed(_))));
    m.step(Event::Advance { ms: 100_000 });
    m.step(Event::Dispatch { max: 1 });
    m.step(Event::Outcome { pick: 1, kind: 7 }); // other parameters
    assert_eq!(m.live.counters.forged_results, 2);
    assert_eq!(m.live.counters.lost_attempts, 2);
    assert_ne!(m.status[&task_id], TaskStatus::Completed);
    // the real result still completes the task
    m.step(Event::Advance { ms: 100_000 });
    m.step(Event::Dispatch { max: 1 });
    m.step(Event::Outcome { pick: 2, kind: 0 });
    assert_eq!(m.status[&task_id], TaskStatus::Completed);
    m.check();
}

mod placement;
mod retries;
mod sent_ahead;
mod takeback;
