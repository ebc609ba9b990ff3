//! What an attempt costs a task's retries: a refused attempt and one lost
//! to a worker that broke its promise cost none; ordinary losses and
//! failures do (driven through the same [`Model`](super::Model) as the
//! others).

use super::*;

/// Attempts `picks` (in the order issued) are dispatched, start and end
/// with outcome `kind` of the model, each followed by 100 ms.
fn run_attempts(m: &mut Model, picks: std::ops::RangeInclusive<usize>, kind: u8) {
    for n in picks {
        m.step(Event::Dispatch { max: 1 });
        m.step(Event::Started { pick: n });
        m.step(Event::Outcome { pick: n, kind });
        m.step(Event::Advance { ms: 100 });
    }
}

#[test]
fn a_refused_attempt_is_not_counted_and_retries_run_out() {
    let mut m = Model::new();
    m.step(Event::Submit {
        count: 1,
        priority: 0,
    });
    m.step(Event::Dispatch { max: 1 });
    // sent to a worker that takes one request per task: running at once
    m.step(Event::Started { pick: 0 });
    let fx = m.live.outcome(
        &"t1".into(),
        m.issued[0].1,
        &m.issued[0].2.clone(),
        OutcomeKind::Refused("429".into()),
        m.now,
    );
    assert!(fx.persist.iter().any(|c| matches!(
        c,
        Change::Requeue {
            attempts: 0,
            next_at: None,
            ..
        }
    )));
    assert!(fx.released.iter().any(|(_, freed, _)| *freed == Freed::Nothing));
    m.effects(fx);
    assert_eq!(m.live.place_of("t1"), Some(Place::Ready));
    run_attempts(&mut m, 1..=3, 2);
    assert_eq!(
        m.status["t1"],
        TaskStatus::Failed,
        "2 retries after the first attempt"
    );
    assert_eq!(m.live.counters.failed, 1);
    m.check();
}

#[test]
fn attempts_lost_to_a_worker_that_broke_its_promise_never_use_up_the_retries() {
    let mut m = Model::new();
    m.step(Event::Submit {
        count: 1,
        priority: 0,
    });
    // many liars in a row, each cut off while it "ran" the task
    for n in 0..6 {
        m.step(Event::Dispatch { max: 1 });
        m.step(Event::Started { pick: n });
        let (task_id, attempt_id, worker) = m.issued[n].clone();
        let fx = m.live.outcome(
            &task_id,
            attempt_id,
            &worker,
            OutcomeKind::Broken("the batch answer was silent".into()),
            m.now,
        );
        assert!(fx.persist.iter().any(|c| matches!(
            c,
            Change::AttemptEnded { end: AttemptEnd::Lost, error: Some(e), .. } if e.contains("not counted")
        )));
        assert!(
            fx.persist.iter().any(|c| matches!(
                c,
                Change::Requeue {
                    attempts: 0,
                    next_at: None,
                    ..
                }
            )),
            "back at once, no attempt counted: {:?}",
            fx.persist
        );
        m.effects(fx);
        assert_eq!(m.live.place_of("t1"), Some(Place::Ready), "after liar {n}");
    }
    assert_eq!(m.live.counters.lost_attempts, 6);
    // an ordinary loss still counts (the task itself may be what hangs)
    run_attempts(&mut m, 6..=8, 4);
    assert_eq!(
        m.status["t1"],
        TaskStatus::Failed,
        "2 retries after the first counted attempt"
    );
    m.check();
}
