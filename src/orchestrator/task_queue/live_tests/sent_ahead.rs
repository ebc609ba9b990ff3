//! A task sent ahead to a worker's backlog: queued in the database until
//! the worker says it took a slot, and handed back uncounted if it never
//! did (driven through the same [`Model`](super::Model) as the others).

use super::*;

#[test]
fn a_task_sent_ahead_is_queued_in_the_database_until_it_starts() {
    let mut m = Model::new();
    m.step(Event::Submit {
        count: 2,
        priority: 1,
    });
    m.step(Event::Dispatch { max: 2 });
    // both sent; neither took a slot yet
    assert_eq!(m.status["t1"], TaskStatus::Queued);
    assert!(m.live.sent_ahead_to("t1").is_some());
    // t1 starts: persisted running, with its queue wait
    let fx = m.live.started(&"t1".into(), m.issued[0].1, m.now + 1.0);
    assert!(fx
        .persist
        .iter()
        .any(|c| matches!(c, Change::AttemptStarted { .. })));
    assert!(fx.samples.iter().any(|s| matches!(s, Sample::QueueWait { .. })));
    m.effects(fx);
    assert_eq!(m.status["t1"], TaskStatus::Running);
    assert!(m.live.sent_ahead_to("t1").is_none());
    // said twice, or for another attempt: nothing more
    assert!(m
        .live
        .started(&"t1".into(), m.issued[0].1, m.now)
        .persist
        .is_empty());
    assert!(m.live.started(&"t2".into(), 999.into(), m.now).persist.is_empty());
    // t2's worker is lost before t2 started: handed back, not an attempt,
    // nothing written, and it is ready again at once
    let (t2, a2, w2) = m.issued[1].clone();
    let fx = m.live.outcome(
        &t2,
        a2,
        &w2,
        OutcomeKind::Refused("lost before it started".into()),
        m.now,
    );
    assert!(fx.persist.is_empty());
    assert!(fx.released.iter().any(|(_, freed, _)| *freed == Freed::Nothing));
    m.open.remove(&t2);
    m.effects(fx);
    assert_eq!(m.live.place_of("t2"), Some(Place::Ready));
    assert_eq!(m.status["t2"], TaskStatus::Queued);
    // a result from a worker that never said it started (an older worker,
    // or the started line lost): the attempt is persisted, then recorded
    m.step(Event::Dispatch { max: 1 });
    let (t2, a2, w2) = m.issued[2].clone();
    let fx = m.live.outcome(
        &t2,
        a2,
        &w2,
        OutcomeKind::Result(Box::new(result(&t2, RunStatus::Completed))),
        m.now,
    );
    let started_at = fx
        .persist
        .iter()
        .position(|c| matches!(c, Change::AttemptStarted { .. }));
    assert_eq!(started_at, Some(0), "{:?}", fx.persist);
    assert!(fx.completion.is_some());
    m.effects(fx);
    assert_eq!(m.status["t2"], TaskStatus::Completed);
    m.check();
}
