//! Taking back tasks sent ahead (`takeback.rs`): the model's answers to
//! take-backs, the priority rule checked after every dispatch, and the
//! issue's scenario by hand (driven through the same
//! [`Model`](super::Model) as the others).

use super::*;
use crate::orchestrator::task_queue::SoonerStarts;
use crate::orchestrator::worker_proxy::TakeBackOutcome;

impl Model {
    /// A worker answers take-back `pick` (see [`Event::TakeBackAnswer`]).
    pub(super) fn take_back_answer(&mut self, pick: usize, outcome: u8) {
        if self.asked_back.is_empty() {
            return;
        }
        let (task_id, attempt_id, _) = self.asked_back.remove(pick % self.asked_back.len());
        let open = self.open.get(&task_id) == Some(&attempt_id);
        // the worker tells the truth: one that started stays started, and
        // only an attempt still there can be given back
        let outcome = if self.started.contains(&attempt_id) {
            TakeBackOutcome::Started
        } else if !open {
            TakeBackOutcome::NotHere
        } else {
            [
                TakeBackOutcome::Returned,
                TakeBackOutcome::Started,
                TakeBackOutcome::NotHere,
            ][outcome as usize % 3]
        };
        let attempts_before = self.live.tasks.get(&task_id).map(|t| t.entry.attempts);
        let was_taking_back = matches!(
            self.live.state_of(&task_id),
            Some(TaskState::TakingBack { attempt_id: a, .. }) if *a == attempt_id
        );
        if outcome == TakeBackOutcome::Returned && was_taking_back {
            // the attempt ends here, before anything of it was persisted
            self.open.remove(&task_id);
        }
        let fx = self.live.took_back(&task_id, attempt_id, outcome, self.now);
        if outcome == TakeBackOutcome::Returned && was_taking_back {
            assert!(fx.persist.is_empty(), "a task given back wrote {:?}", fx.persist);
            let resent = fx
                .send
                .iter()
                .any(|s| matches!(s, Outbound::Run { task_id: t, .. } if *t == task_id));
            let after = self.live.tasks.get(&task_id).map(|t| t.entry.attempts);
            assert_eq!(
                after,
                attempts_before.map(|a| a - 1 + u32::from(resent)),
                "a task given back is not counted as an attempt"
            );
        }
        self.effects(fx);
    }

    /// After a dispatch: no task waits in a backlog below a better one
    /// waiting in another that its worker could run, unless it was asked
    /// back lately and found not there.
    pub(super) fn check_floors(&self) {
        let claims = self.live.claims(self.now, Priority::Low);
        for (w, floor) in &claims.floor {
            for (key, id) in self.live.waiting_on(w) {
                let t = &self.live.tasks[id];
                if matches!(t.state, TaskState::SentAhead { .. }) && t.entry.take_back_after <= self.now {
                    assert!(
                        key.0 <= *floor,
                        "{id} ({:?}) waits on {w} below a {floor:?} task waiting elsewhere",
                        key.0
                    );
                }
            }
        }
    }
}

/// Two workers of capacity 1 that take one task ahead each (w1, w2 of
/// the model; w0 removed), one `reference` kernel.
fn two_workers() -> Model {
    let mut m = Model::new();
    m.member(0, 4);
    for i in [1, 2] {
        let v = m.members[i].as_mut().unwrap();
        v.capacity = 1;
        v.backlog_limit = 1;
    }
    m.roster();
    m
}

fn submit(m: &mut Model, count: usize, priority: u8) {
    m.step(Event::Submit { count, priority });
}

fn start(m: &mut Model, task: &str) {
    let (t, a, _) = m
        .issued
        .iter()
        .rev()
        .find(|(t, _, _)| t.as_str() == task)
        .cloned()
        .unwrap();
    let fx = m.live.started(&t, a, m.now);
    m.effects(fx);
}

fn complete(m: &mut Model, task: &str) {
    let (t, a, w) = m
        .issued
        .iter()
        .rev()
        .find(|(t, _, _)| t.as_str() == task)
        .cloned()
        .unwrap();
    let kind = OutcomeKind::Result(Box::new(result(&t, RunStatus::Completed)));
    let fx = m.live.outcome(&t, a, &w, kind, m.now);
    m.effects(fx);
}

fn worker_of(m: &Model, task: &str) -> Option<WorkerId> {
    m.live
        .state_of(task)
        .and_then(TaskState::attempt)
        .map(|(w, _)| w.clone())
}

/// The scenario: a blocker runs on one worker; two high tasks and
/// eight low ones arrive. No low task is queued where it would start
/// before the second high one; the high one sent ahead behind the blocker
/// is taken back to the other worker's free slot, uncounted.
#[test]
fn a_high_task_behind_a_blocker_is_taken_back_to_a_free_slot() {
    let mut m = two_workers();
    submit(&mut m, 1, 2); // t1: the blocker, low
    m.step(Event::Dispatch { max: 8 });
    let blocker_on = worker_of(&m, "t1").unwrap();
    start(&mut m, "t1");
    submit(&mut m, 2, 0); // t2, t3: high
    submit(&mut m, 8, 2); // t4..t11: low
    m.step(Event::Dispatch { max: 16 });
    let other = if blocker_on == worker(1) {
        worker(2)
    } else {
        worker(1)
    };
    // one high task runs on the free worker, the other waits behind the
    // blocker; no low task is queued anywhere (it would start on the
    // free worker before the high one waiting behind the blocker)
    let (h_free, h_behind) = if worker_of(&m, "t2") == Some(other.clone()) {
        ("t2", "t3")
    } else {
        ("t3", "t2")
    };
    assert_eq!(worker_of(&m, h_free), Some(other.clone()));
    assert_eq!(worker_of(&m, h_behind), Some(blocker_on.clone()));
    for i in 4..=11 {
        assert_eq!(
            m.live.place_of(&format!("t{i}")),
            Some(Place::Ready),
            "t{i} was sent ahead"
        );
    }
    start(&mut m, h_free);
    complete(&mut m, h_free);
    // the free slot: the high task waiting behind the blocker is asked back
    m.step(Event::Dispatch { max: 16 });
    assert!(
        matches!(m.live.state_of(h_behind), Some(TaskState::TakingBack { to: Some(w), .. }) if *w == other),
        "{:?}",
        m.live.state_of(h_behind)
    );
    // the slot is held for it: no low task takes it meanwhile
    for i in 4..=11 {
        assert_eq!(
            m.live.place_of(&format!("t{i}")),
            Some(Place::Ready),
            "t{i} took the held slot"
        );
    }
    let attempts = m.live.tasks[h_behind].entry.attempts;
    m.step(Event::TakeBackAnswer { pick: 0, outcome: 0 });
    assert_eq!(
        worker_of(&m, h_behind),
        Some(other.clone()),
        "sent to the free slot at once"
    );
    assert_eq!(
        m.live.tasks[h_behind].entry.attempts, attempts,
        "the given-back attempt is not counted"
    );
    assert_eq!(m.live.counters.taken_back, 1);
    assert_eq!(
        m.status[h_behind],
        TaskStatus::Queued,
        "nothing was written of it"
    );
    // the given-back attempt can no longer start
    let given_back = m
        .issued
        .iter()
        .find(|(t, _, w)| t.as_str() == h_behind && *w == blocker_on)
        .unwrap()
        .1;
    assert!(m
        .live
        .started(&h_behind.into(), given_back, m.now)
        .persist
        .is_empty());
    start(&mut m, h_behind);
    m.check();
}

/// A worker that started the task anyway keeps it: it runs once, its
/// attempt kept; one that does not have it yet keeps it too, and it is
/// not asked again at once.
#[test]
fn a_task_started_anyway_stays_and_one_not_there_is_asked_again_later() {
    let mut m = two_workers();
    submit(&mut m, 1, 2);
    m.step(Event::Dispatch { max: 8 });
    start(&mut m, "t1");
    submit(&mut m, 2, 0);
    m.step(Event::Dispatch { max: 8 });
    let blocker_on = worker_of(&m, "t1").unwrap();
    let behind = if worker_of(&m, "t2") == Some(blocker_on.clone()) {
        "t2"
    } else {
        "t3"
    };
    let free = if behind == "t2" { "t3" } else { "t2" };
    start(&mut m, free);
    complete(&mut m, free);
    m.step(Event::Dispatch { max: 8 });
    assert!(matches!(
        m.live.state_of(behind),
        Some(TaskState::TakingBack { .. })
    ));
    // not there: it stays sent ahead, and is not asked again at once
    m.step(Event::TakeBackAnswer { pick: 0, outcome: 2 });
    assert!(matches!(
        m.live.state_of(behind),
        Some(TaskState::SentAhead { .. })
    ));
    m.step(Event::Dispatch { max: 8 });
    assert!(m.asked_back.is_empty(), "asked again at once");
    m.step(Event::Advance { ms: 600 });
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(m.asked_back.len(), 1, "asked again after the pause");
    // it started anyway: it runs there, persisted once
    m.step(Event::TakeBackAnswer { pick: 0, outcome: 1 });
    assert!(
        matches!(m.live.state_of(behind), Some(TaskState::Running { worker, .. }) if *worker == blocker_on),
        "{:?}",
        m.live.state_of(behind)
    );
    assert_eq!(m.status[behind], TaskStatus::Running);
    assert_eq!(m.live.counters.taken_back, 0);
    m.check();
}

/// Submits one `reference` task of `particles` × `steps` (the speed
/// model's prior predicts it: 4·10⁸ pair-steps a second) as the next `tN`.
fn submit_sized(m: &mut Model, particles: u64, steps: u64) -> String {
    let seq = m.tasks.len() as i64 + 1;
    let t = NewTask {
        task_id: format!("t{seq}").into(),
        priority: Priority::Medium,
        algorithm: "python".into(),
        kernel: "reference".into(),
        body: json!({"parameters": {"num_particles": particles, "num_steps": steps}}).to_string(),
        reuse_key: None,
    };
    m.status.insert(t.task_id.clone(), TaskStatus::Queued);
    m.tasks.push((t.clone(), seq));
    m.live.submitted(vec![t], vec![seq], "api", m.now);
    format!("t{seq}")
}

/// A blocker predicted `blocker_seconds` runs on w1, a task predicted
/// `other_seconds` on w2 (round robin: w1, then w2), and a small task is
/// sent ahead behind the blocker (round robin again: w1). Answers the
/// small task's id.
fn behind_a_blocker(m: &mut Model, blocker_seconds: u64, other_seconds: u64) -> String {
    // N = 1,000: 10⁶ pair-steps a step, 400 steps a second by the prior
    let blocker = submit_sized(m, 1000, blocker_seconds * 400);
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(worker_of(m, &blocker), Some(worker(1)));
    start(m, &blocker);
    let other = submit_sized(m, 1000, other_seconds * 400);
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(worker_of(m, &other), Some(worker(2)));
    start(m, &other);
    let small = submit_sized(m, 100, 40);
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(
        worker_of(m, &small),
        Some(worker(1)),
        "sent ahead behind the blocker"
    );
    assert!(matches!(
        m.live.state_of(&small),
        Some(TaskState::SentAhead { .. })
    ));
    small
}

/// Part 3's "or when it would start sooner there": no slot is free
/// anywhere, but the task sent ahead behind a 1,000-second blocker would
/// start in 10 seconds on the other worker (behind a shorter task): it is
/// taken back there, exactly once, uncounted, and not moved again at once.
#[test]
fn a_task_that_would_start_much_sooner_elsewhere_is_taken_back_there() {
    let mut m = two_workers();
    let small = behind_a_blocker(&mut m, 1000, 10);
    m.now += 1.0;
    m.step(Event::Dispatch { max: 8 });
    assert!(
        matches!(m.live.state_of(&small), Some(TaskState::TakingBack { to: Some(w), .. }) if *w == worker(2)),
        "{:?}",
        m.live.state_of(&small)
    );
    // asked once: another dispatch does not ask again meanwhile
    m.now += 0.5;
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(m.asked_back.len(), 1);
    let attempts = m.live.tasks[small.as_str()].entry.attempts;
    m.step(Event::TakeBackAnswer { pick: 0, outcome: 0 });
    assert_eq!(worker_of(&m, &small), Some(worker(2)), "sent there at once");
    assert!(matches!(
        m.live.state_of(&small),
        Some(TaskState::SentAhead { .. })
    ));
    assert_eq!(
        m.live.tasks[small.as_str()].entry.attempts,
        attempts,
        "not counted"
    );
    assert_eq!(
        m.status[small.as_str()],
        TaskStatus::Queued,
        "nothing was written of it"
    );
    assert_eq!(m.live.counters.taken_back, 1);
    // settled: not moved this way again for a while, even when asked
    assert_eq!(
        m.live.tasks[small.as_str()].entry.settled_after,
        m.now + SoonerStarts::default().settle
    );
    m.now += 0.5;
    m.step(Event::Dispatch { max: 8 });
    assert!(m.asked_back.is_empty(), "it bounced");
    m.check();
}

/// The margin: a task that would start only a little sooner elsewhere
/// (here 12 s against 8 s: less than half the wait saved) stays, so that
/// the noise of predictions does not move tasks back and forth.
#[test]
fn a_small_gain_does_not_move_a_task() {
    let mut m = two_workers();
    let small = behind_a_blocker(&mut m, 12, 8);
    for _ in 0..3 {
        m.now += 0.5;
        m.step(Event::Dispatch { max: 8 });
    }
    assert!(m.asked_back.is_empty(), "{:?}", m.live.state_of(&small));
    assert_eq!(worker_of(&m, &small), Some(worker(1)));
    m.check();
}

/// The margins are settings: the same 12 s against 8 s moves the task
/// once the least share of the wait saved is a quarter, not a half; with
/// the move turned off, not even a 1,000 s blocker against 10 s moves it;
/// and the settle time is the one set.
#[test]
fn the_sooner_start_margins_come_from_the_settings() {
    let mut m = two_workers();
    m.live.sooner = Some(SoonerStarts {
        min_fraction: 0.25,
        settle: 3.0,
        ..SoonerStarts::default()
    });
    let small = behind_a_blocker(&mut m, 12, 8);
    m.now += 0.5;
    m.step(Event::Dispatch { max: 8 });
    assert!(
        matches!(m.live.state_of(&small), Some(TaskState::TakingBack { to: Some(w), .. }) if *w == worker(2)),
        "{:?}",
        m.live.state_of(&small)
    );
    m.step(Event::TakeBackAnswer { pick: 0, outcome: 0 });
    assert_eq!(worker_of(&m, &small), Some(worker(2)), "sent there at once");
    assert_eq!(m.live.tasks[small.as_str()].entry.settled_after, m.now + 3.0);
    m.check();

    let mut off = two_workers();
    off.live.sooner = None;
    let small = behind_a_blocker(&mut off, 1000, 10);
    for _ in 0..3 {
        off.now += 1.0;
        off.step(Event::Dispatch { max: 8 });
    }
    assert!(off.asked_back.is_empty(), "{:?}", off.live.state_of(&small));
    assert_eq!(worker_of(&off, &small), Some(worker(1)));
    off.check();
}

/// A task started anyway when asked back for a sooner start runs where it
/// is, once.
#[test]
fn a_task_asked_back_for_a_sooner_start_that_started_stays() {
    let mut m = two_workers();
    let small = behind_a_blocker(&mut m, 1000, 10);
    m.now += 1.0;
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(m.asked_back.len(), 1);
    m.step(Event::TakeBackAnswer { pick: 0, outcome: 1 });
    assert!(
        matches!(m.live.state_of(&small), Some(TaskState::Running { worker: w, .. }) if *w == worker(1)),
        "{:?}",
        m.live.state_of(&small)
    );
    assert_eq!(m.live.counters.taken_back, 0);
    m.check();
}

/// Tasks of one priority: a slot that frees takes the next ready task at
/// once; the task waiting in the other worker's backlog stays there (a
/// take-back would cost a round trip for no better task).
#[test]
fn a_free_slot_takes_a_ready_task_of_the_same_priority_rather_than_ask_one_back() {
    let mut m = two_workers();
    submit(&mut m, 6, 1); // t1..t6, medium
    m.step(Event::Dispatch { max: 8 });
    // each worker runs one and holds one ahead; t5, t6 ready
    let running: Vec<String> = (1..=4)
        .map(|i| format!("t{i}"))
        .filter(|t| worker_of(&m, t).is_some())
        .collect();
    assert_eq!(running.len(), 4);
    for t in &running {
        start(&mut m, t);
    }
    let on_w1: Vec<&String> = running
        .iter()
        .filter(|t| worker_of(&m, t) == Some(worker(1)))
        .collect();
    // w1's running task ends: its slot is free; w2 holds a task ahead
    let ran = on_w1
        .iter()
        .find(|t| matches!(m.live.state_of(t), Some(TaskState::Running { .. })))
        .map(|t| t.to_string())
        .unwrap();
    complete(&mut m, &ran);
    m.step(Event::Dispatch { max: 8 });
    assert_eq!(m.live.counters.taken_back, 0);
    for i in 1..=6 {
        assert!(
            !matches!(
                m.live.state_of(&format!("t{i}")),
                Some(TaskState::TakingBack { .. })
            ),
            "t{i} was asked back while a ready task of its priority could take the slot"
        );
    }
    assert_eq!(
        worker_of(&m, "t5"),
        Some(worker(1)),
        "the ready task went to the free slot"
    );
}

/// The end of a batch: nothing ready, one worker idle, a task waiting
/// behind the other's busy slot: it is asked back to the idle one.
#[test]
fn at_the_end_of_a_batch_a_task_waiting_in_a_backlog_is_taken_back_to_an_idle_worker() {
    let mut m = two_workers();
    submit(&mut m, 4, 1); // t1..t4, medium: all placed, none ready
    m.step(Event::Dispatch { max: 8 });
    let mine = |m: &Model, w: usize| -> Vec<String> {
        (1..=4)
            .map(|i| format!("t{i}"))
            .filter(|t| worker_of(m, t) == Some(worker(w)))
            .collect()
    };
    // each worker starts one task; one waits behind it
    for w in [1, 2] {
        let first = mine(&m, w)[0].clone();
        start(&mut m, &first);
    }
    // w1 runs both of its tasks to the end; w2's first still runs
    for t in mine(&m, 1) {
        if !matches!(m.live.state_of(&t), Some(TaskState::Running { .. })) {
            start(&mut m, &t);
        }
        complete(&mut m, &t);
    }
    m.step(Event::Dispatch { max: 8 });
    let behind: Vec<String> = mine(&m, 2)
        .into_iter()
        .filter(|t| matches!(m.live.state_of(t), Some(TaskState::TakingBack { .. })))
        .collect();
    assert_eq!(
        behind.len(),
        1,
        "the task waiting behind w2's slot is asked back to w1"
    );
}
