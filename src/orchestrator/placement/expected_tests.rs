//! Tests of the speed model and the largest-first order.

use super::*;

fn w(id: &str) -> WorkerId {
    WorkerId::new(id)
}

fn opt(particles: u64, steps: u64) -> TaskSize {
    TaskSize {
        kernel: "optimized".into(),
        particles,
        steps,
    }
}

fn reference(particles: u64, steps: u64) -> TaskSize {
    TaskSize {
        kernel: "reference".into(),
        particles,
        steps,
    }
}

/// Places `task` on `worker` and completes it in `seconds`.
fn run(e: &mut Expected, worker: &WorkerId, task: TaskSize, seconds: f64) {
    e.placed(worker, Some(task), 0.0);
    e.released(worker, Some(task), Some(seconds), true);
}

#[test]
fn work_is_n_steps_for_optimized_and_n_squared_steps_for_reference() {
    assert_eq!(opt(1000, 50).work(), 50_000.0);
    assert_eq!(reference(1000, 50).work(), 50_000_000.0);
    let sleep = TaskSize {
        kernel: "__sleep".into(),
        particles: 0,
        steps: 0,
    };
    assert_eq!(sleep.work(), 0.0);
}

#[test]
fn learns_each_workers_speed_per_kernel_from_results() {
    let mut e = Expected::new();
    let (a, b) = (w("a"), w("b"));
    // no history: every worker alike, at the built-in prior
    assert_eq!(e.speed(&a, "optimized"), prior_speed("optimized"));
    assert_eq!(e.predict(&a, &opt(1000, 50)), e.predict(&b, &opt(1000, 50)));
    run(&mut e, &a, opt(1000, 100), 0.01); // 10⁷ units/s
    assert_eq!(e.learned_speed(&a, "optimized"), Some(1e7));
    assert!((e.predict(&a, &opt(2000, 100)) - 0.02).abs() < 1e-12);
    // the other kernel is not learned from this one
    assert_eq!(e.learned_speed(&a, "reference"), None);
    // a worker with no result of its own takes the others' median
    assert_eq!(e.speed(&b, "optimized"), 1e7);
    run(&mut e, &b, opt(1000, 100), 0.005); // twice as fast
    assert_eq!(e.learned_speed(&b, "optimized"), Some(2e7));
    assert_eq!(e.learned_speed(&a, "optimized"), Some(1e7));
    assert!(e.predict(&b, &opt(1000, 100)) < e.predict(&a, &opt(1000, 100)));
}

#[test]
fn a_few_outliers_move_the_estimate_little_and_a_lasting_change_wins() {
    let mut e = Expected::new();
    let a = w("a");
    for _ in 0..6 {
        run(&mut e, &a, opt(1000, 100), 0.01);
    }
    // two runs 50× slower (a neighbour hogged the core), one absurdly fast
    run(&mut e, &a, opt(1000, 100), 0.5);
    run(&mut e, &a, opt(1000, 100), 0.5);
    run(&mut e, &a, opt(1000, 100), 0.002);
    assert_eq!(e.learned_speed(&a, "optimized"), Some(1e7));
    // the machine really got 4× slower: within SAMPLES/2 + 1 results
    for _ in 0..SAMPLES / 2 + 1 {
        run(&mut e, &a, opt(1000, 100), 0.04);
    }
    assert_eq!(e.learned_speed(&a, "optimized"), Some(2.5e6));
}

#[test]
fn runs_too_short_or_not_finite_are_not_learned_from() {
    let mut e = Expected::new();
    let a = w("a");
    run(&mut e, &a, opt(16, 1), 0.0001);
    run(&mut e, &a, opt(1000, 100), f64::NAN);
    run(&mut e, &a, opt(1000, 100), f64::INFINITY);
    run(&mut e, &a, opt(1000, 100), 0.0);
    assert_eq!(e.learned_speed(&a, "optimized"), None);
    // failures and cancellations teach nothing either
    e.placed(&a, Some(opt(1000, 100)), 0.0);
    e.released(&a, Some(opt(1000, 100)), None, true);
    assert_eq!(e.learned_speed(&a, "optimized"), None);
}

#[test]
fn expected_finish_waits_for_the_slot_that_frees_first() {
    let mut e = Expected::new();
    let a = w("a");
    run(&mut e, &a, opt(1000, 1000), 0.1); // 10⁷ units/s: opt(1000, 1000) takes 0.1 s
    let task = opt(1000, 1000);
    // idle: just the task
    assert!((e.finish_in(&a, 2, &task, 0.0) - 0.1).abs() < 1e-9);
    // one slot of two busy: a slot is free now
    e.placed(&a, Some(opt(1000, 3000)), 0.0);
    assert!((e.finish_in(&a, 2, &task, 0.0) - 0.1).abs() < 1e-9);
    // both busy (0.3 s and 0.5 s placed at 0): the first frees at 0.3
    e.placed(&a, Some(opt(1000, 5000)), 0.0);
    assert!((e.finish_in(&a, 2, &task, 0.0) - 0.4).abs() < 1e-9);
    // 0.1 s later the running ones have 0.2 s and 0.4 s left
    assert!((e.finish_in(&a, 2, &task, 0.1) - 0.3).abs() < 1e-9);
    // a backlog task (beyond capacity) counts whole on the first free slot
    e.placed(&a, Some(opt(1000, 1000)), 0.1);
    assert!((e.finish_in(&a, 2, &task, 0.1) - 0.4).abs() < 1e-9);
    // released: the 0.3 s one ended; the backlog task took its slot and
    // counts as running since it was placed (the model's approximation:
    // the Membership does not see when a backlog task starts)
    e.released(&a, Some(opt(1000, 3000)), Some(0.3), false);
    assert!((e.finish_in(&a, 2, &task, 0.3) - 0.1).abs() < 1e-9);
    assert!((e.finish_in(&a, 1, &task, 0.3) - 0.4).abs() < 1e-9);
}

#[test]
fn releases_without_a_size_and_idle_workers_leave_no_phantom_holdings() {
    let mut e = Expected::new();
    let a = w("a");
    run(&mut e, &a, opt(1000, 1000), 0.1);
    let task = opt(1000, 1000);
    // an adopted attempt (unknown size) then a known one on one slot
    e.placed(&a, None, 0.0);
    e.placed(&a, Some(opt(1000, 2000)), 0.0);
    // the adopted one ends: its release carries a size never placed here
    e.released(&a, Some(opt(7, 7)), None, false);
    assert!((e.finish_in(&a, 1, &task, 0.0) - 0.3).abs() < 1e-9);
    // a task placed as it was cancelled: released with no size, the newest goes
    e.placed(&a, Some(opt(1000, 9000)), 0.0);
    e.released(&a, None, None, false);
    assert!((e.finish_in(&a, 1, &task, 0.0) - 0.3).abs() < 1e-9);
    // idle: whatever was left is dropped
    e.placed(&a, Some(opt(1000, 9000)), 0.0);
    e.released(&a, Some(opt(1000, 2000)), None, true);
    assert!((e.finish_in(&a, 1, &task, 0.0) - 0.1).abs() < 1e-9);
}

#[test]
fn largest_first_reorders_within_a_priority_never_across() {
    // high (0): 1 s, 5 s; medium (1): 2 s, 9 s, 2 s; low (2): 100 s
    let tasks = [(0, 1.0), (0, 5.0), (1, 2.0), (1, 9.0), (1, 2.0), (2, 100.0)];
    assert_eq!(largest_first(&tasks), [1, 0, 3, 2, 4, 5]);
    // equal sizes keep their arrival order
    assert_eq!(largest_first(&[(1, 3.0), (1, 3.0), (1, 3.0)]), [0, 1, 2]);
    // a class that comes back later is its own run: the largest task of
    // the batch (low) never jumps ahead of the high one after it
    assert_eq!(
        largest_first(&[(1, 1.0), (1, 2.0), (0, 50.0), (1, 9.0)]),
        [1, 0, 2, 3]
    );
    assert!(largest_first::<u8>(&[]).is_empty());
}

#[test]
fn typical_seconds_compares_kernels_in_time_not_in_units() {
    let mut e = Expected::new();
    let a = w("a");
    run(&mut e, &a, opt(1000, 1000), 0.1); // 10⁷ N·steps/s
    run(&mut e, &a, reference(1000, 100), 0.5); // 2·10⁸ N²·steps/s
                                                // 10⁸ N·steps (10 s) is longer than 10⁹ N²·steps (5 s)
    assert!((e.typical_seconds(&opt(10_000, 10_000)) - 10.0).abs() < 1e-9);
    assert!((e.typical_seconds(&reference(1000, 1000)) - 5.0).abs() < 1e-9);
}

#[test]
fn a_forgotten_worker_starts_afresh() {
    let mut e = Expected::new();
    let (a, b) = (w("a"), w("b"));
    run(&mut e, &a, opt(1000, 100), 0.01);
    run(&mut e, &b, opt(1000, 100), 0.04);
    e.placed(&a, Some(opt(1000, 9000)), 0.0);
    e.forget(&a);
    assert_eq!(e.learned_speed(&a, "optimized"), None);
    // the others' median again, and nothing held
    assert_eq!(e.speed(&a, "optimized"), 2.5e6);
    assert!((e.finish_in(&a, 1, &opt(1000, 100), 0.0) - 0.04).abs() < 1e-9);
}

#[test]
fn a_backlog_task_starts_when_the_tasks_before_it_are_laid_on_the_slots() {
    let mut e = Expected::new();
    let a = w("a");
    run(&mut e, &a, opt(1000, 1000), 0.1); // 10⁷ units/s
                                           // two slots running 0.3 s and 0.5 s tasks, two tasks waiting
    e.placed(&a, Some(opt(1000, 3000)), 0.0);
    e.placed(&a, Some(opt(1000, 5000)), 0.0);
    e.placed(&a, Some(opt(1000, 4000)), 0.0);
    e.placed(&a, Some(opt(1000, 1000)), 0.0);
    // the running two only, 0.1 s on: free at 0.2 and 0.4
    let mut slots = e.slots_after(&a, 2, 2, 0.1);
    assert!((first_free(&slots) - 0.2).abs() < 1e-9);
    // the first waiting one (0.4 s) starts at 0.2, the next at 0.4
    assert!((lay(&mut slots, 0.4) - 0.2).abs() < 1e-9);
    assert!((lay(&mut slots, 0.1) - 0.4).abs() < 1e-9);
    // one more after all four: 0.5 (the 0.1 s one ends at 0.5, the 0.4 s at 0.6)
    assert!((e.start_in(&a, 2, 0.1) - 0.5).abs() < 1e-9);
    assert!((e.finish_in(&a, 2, &opt(1000, 1000), 0.1) - 0.6).abs() < 1e-9);
    // no slot: nothing to lay on
    assert_eq!(lay(&mut [], 1.0), 0.0);
}

#[test]
fn the_typical_speed_follows_what_is_learned_and_who_leaves() {
    let mut e = Expected::new();
    let (a, b, c) = (w("a"), w("b"), w("c"));
    // asked before anything is learned: the prior, and asked again after
    // a first result (the cached answer is dropped when a speed changes)
    assert_eq!(e.speed(&c, "optimized"), prior_speed("optimized"));
    run(&mut e, &a, opt(1000, 100), 0.01); // 10⁷ units/s
    assert_eq!(e.speed(&c, "optimized"), 1e7);
    run(&mut e, &b, opt(1000, 100), 0.0025); // 4·10⁷
    assert_eq!(e.speed(&c, "optimized"), 2.5e7);
    for _ in 0..SAMPLES {
        run(&mut e, &a, opt(1000, 100), 0.0025);
    }
    assert_eq!(e.speed(&c, "optimized"), 4e7);
    // a worker that leaves no longer counts
    run(&mut e, &a, opt(1000, 100), 0.01);
    e.forget(&b);
    assert_eq!(
        e.speed(&c, "optimized"),
        e.learned_speed(&a, "optimized").unwrap()
    );
    e.forget(&a);
    assert_eq!(e.speed(&c, "optimized"), prior_speed("optimized"));
}
