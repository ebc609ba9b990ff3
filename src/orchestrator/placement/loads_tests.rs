//! A worker sent ahead is topped up in one go once its backlog has run
//! down to half, not by a task or two at every dispatch.

use super::*;

fn view(i: usize, backlog_limit: usize) -> MemberView {
    MemberView {
        id: WorkerId::from(format!("w{i}").as_str()),
        reachable: true,
        up: true,
        drain_reason: None,
        capacity: 1,
        kernels: vec!["reference".into()],
        backlog_limit,
        state_text: "up".into(),
    }
}

fn tasks(n: usize) -> Vec<ToPlace> {
    (0..n)
        .map(|_| ToPlace {
            kernel: "reference".into(),
            avoid: Vec::new(),
            priority: Priority::Medium,
            size: (16, 1),
        })
        .collect()
}

/// Places `n` tasks; answers how many went to each worker, in order.
fn place(loads: &mut Loads, n: usize, workers: usize) -> Vec<usize> {
    let mut per = vec![0; workers];
    for w in loads.place(&tasks(n), 0.0).into_iter().flatten() {
        let i: usize = w.as_str()[1..].parse().unwrap();
        per[i] += 1;
    }
    per
}

/// Workers whose tasks take 0.1 ms: sent 100 ahead each (their backlog
/// limit), refilled once 50 are spent.
fn fast_workers(n: usize) -> Loads {
    let mut loads = Loads::default();
    loads.roster((0..n).map(|i| view(i, 100)).collect());
    let ids: Vec<WorkerId> = loads.ids().cloned().collect();
    for id in &ids {
        // one task each, ended: its pace is learned
        assert!(loads.has_room(id, 0, 0.0));
    }
    place(&mut loads, n, n);
    for id in &ids {
        loads.release(id, Ended::Completed { seconds: 1e-4 }, None, 0.0);
    }
    loads
}

#[test]
fn a_worker_a_few_tasks_short_waits_for_its_refill() {
    let mut loads = fast_workers(1);
    // slot and backlog filled: 1 + 100
    assert_eq!(place(&mut loads, 200, 1), vec![101]);
    let w = WorkerId::from("w0");
    for _ in 0..10 {
        loads.release(&w, Ended::Completed { seconds: 1e-4 }, None, 0.0);
    }
    // ten short, its slot busy: nothing yet
    assert_eq!(place(&mut loads, 200, 1), vec![0]);
    let mut room = false;
    for _ in 0..40 {
        room |= loads
            .release(&w, Ended::Completed { seconds: 1e-4 }, None, 0.0)
            .room;
    }
    // half spent: the release asked for a dispatch, which fills it again
    assert!(room);
    assert_eq!(place(&mut loads, 200, 1), vec![50]);
}

#[test]
fn a_batch_goes_to_the_workers_that_ran_down_not_a_task_to_each() {
    let mut loads = fast_workers(8);
    assert_eq!(place(&mut loads, 8 * 101, 8), vec![101; 8]);
    // every worker ends a task or two; w3 ends half its backlog
    for i in 0..8 {
        let w = WorkerId::from(format!("w{i}").as_str());
        let ended = if i == 3 { 50 } else { 1 + i % 2 };
        for _ in 0..ended {
            loads.release(&w, Ended::Completed { seconds: 1e-4 }, None, 0.0);
        }
    }
    let mut expected = [0; 8];
    expected[3] = 50;
    assert_eq!(place(&mut loads, 64, 8), expected.to_vec());
}

#[test]
fn a_free_slot_always_takes_a_task() {
    let mut loads = Loads::default();
    loads.roster(vec![view(0, 100)]);
    // nothing learned yet: one slot, one ahead
    assert_eq!(place(&mut loads, 5, 1), vec![2]);
    let w = WorkerId::from("w0");
    loads.release(&w, Ended::Completed { seconds: 10.0 }, None, 0.0);
    // slow tasks: one ahead; the slot frees and one is sent at once
    assert_eq!(place(&mut loads, 5, 1), vec![1]);
    // fast tasks, sent 100 ahead: every one of them ends at once, and the
    // free slot and backlog are filled in one batch
    for _ in 0..2 {
        loads.release(&w, Ended::Completed { seconds: 1e-6 }, None, 0.0);
    }
    assert_eq!(place(&mut loads, 500, 1)[0], 1 + loads.workers[0].prefetch());
}
