//! Checkpoint and resume: for both kernels, every vector width and thread
//! count, a run resumed from a checkpoint ends with the bits of the run
//! that never stopped; checkpoints of another kernel, build, format or
//! task, and damaged ones, are refused with the reason.

use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::checkpoint::{Checkpoint, CheckpointRefused, KernelState, FORMAT_VERSION};
use super::simd::{self, Width};
use super::*;

fn params(n: u64, steps: u64, seed: u64) -> SimParams {
    SimParams {
        num_particles: n,
        num_steps: steps,
        seed,
        thermo_every: Some(7),
        ..SimParams::default()
    }
}

fn options(threads: usize) -> RunOptions {
    RunOptions {
        threads,
        limits: Limits::default(),
    }
}

/// Every physics number of a result and its final state, as bits.
fn bits(r: &SimReport) -> Vec<u64> {
    let state = r.state.pos.iter().chain(&r.state.vel).flatten();
    super::tests::physics_bits(&r.metrics)
        .into_iter()
        .chain(state.map(|v| v.to_bits()))
        .collect()
}

/// Runs at width `w` on `threads` threads, resuming `resume` if given and
/// saving a checkpoint after step `at` if given; returns the report and
/// the checkpoints saved.
fn run(
    algorithm: &str,
    p: &SimParams,
    w: Width,
    threads: usize,
    resume: Option<&[u8]>,
    at: Option<u64>,
) -> (SimReport, Vec<Checkpoint>) {
    let saved = Mutex::new(Vec::new());
    let report = simd::with_width(w, || {
        let checkpointing = Checkpointing {
            resume,
            sink: Some(Box::new(|c| saved.lock().unwrap().push(c))),
            at_step: at,
        };
        simulate_with(algorithm, p, &options(threads), &Control::new(), checkpointing)
    })
    .expect("valid parameters");
    (report, saved.into_inner().unwrap())
}

/// For every width and thread count: a checkpoint after step `k` of a run
/// (which itself still ends with the uninterrupted bits), resumed on every
/// width and thread count, ends with the uninterrupted bits too.
fn assert_resume_is_exact(algorithm: &str, p: &SimParams, k: u64) {
    let (base, none) = run(algorithm, p, Width::Base, 1, None, None);
    assert!(none.is_empty());
    assert_eq!(base.status, SimStatus::Completed);
    let want = bits(&base);
    for w in Width::supported() {
        for threads in [1, 2, 3] {
            let what = format!("{algorithm} N={} at {w} on {threads} threads", p.num_particles);
            let (whole, saved) = run(algorithm, p, w, threads, None, Some(k));
            assert!(want == bits(&whole), "{what}: saving a checkpoint changed a bit");
            assert_eq!(saved.len(), 1, "{what}");
            assert_eq!(saved[0].step, k, "{what}");
            let bytes = saved[0].encode();
            assert_eq!(Checkpoint::decode(&bytes).as_ref(), Ok(&saved[0]), "{what}");
            // resumed elsewhere: another thread count
            for resume_threads in [threads, 4 - threads] {
                let (resumed, _) = run(algorithm, p, w, resume_threads, Some(&bytes), None);
                assert_eq!(resumed.resume_refused, None, "{what}");
                assert_eq!(resumed.resumed_from_step, Some(k), "{what}");
                assert_eq!(resumed.metrics.steps_completed, p.num_steps, "{what}");
                assert!(
                    want == bits(&resumed),
                    "{what}: resuming at step {k} on {resume_threads} threads changed a bit"
                );
            }
        }
    }
}

#[test]
fn reference_resumes_with_the_uninterrupted_bits() {
    assert_resume_is_exact("reference", &params(200, 60, 3), 23);
    // a checkpoint after the last step but one
    assert_resume_is_exact("reference", &params(100, 20, 0), 19);
}

#[test]
fn optimized_resumes_with_the_uninterrupted_bits() {
    // several strips, helper threads, list rebuilds before and after k
    assert_resume_is_exact("optimized", &params(5000, 80, 11), 37);
    // a box too small for cells: the all-pairs path
    assert_resume_is_exact("optimized", &params(16, 40, 2), 13);
    // hot: lists rebuilt nearly every step
    let hot = SimParams {
        temperature: Some(20.0),
        dt: Some(0.001),
        ..params(900, 50, 5)
    };
    assert_resume_is_exact("optimized", &hot, 21);
}

#[test]
fn a_resumed_run_can_be_checkpointed_and_resumed_again() {
    for algorithm in ["reference", "optimized"] {
        let p = params(300, 50, 9);
        let (base, _) = run(algorithm, &p, Width::Base, 1, None, None);
        let (_, first) = run(algorithm, &p, Width::Base, 1, None, Some(10));
        let (second_run, second) = run(algorithm, &p, Width::Base, 2, Some(&first[0].encode()), Some(30));
        assert!(bits(&base) == bits(&second_run), "{algorithm}");
        assert_eq!(second[0].step, 30);
        let (last, _) = run(algorithm, &p, Width::Base, 1, Some(&second[0].encode()), None);
        assert_eq!(last.resumed_from_step, Some(30));
        assert!(
            bits(&base) == bits(&last),
            "{algorithm}: a second resume changed a bit"
        );
    }
}

#[test]
fn a_requested_checkpoint_is_saved_after_the_next_step() {
    for algorithm in ["reference", "optimized"] {
        let p = params(100, 10, 1);
        let control = Control::new();
        control.request_checkpoint();
        let saved = Mutex::new(Vec::new());
        let checkpointing = Checkpointing {
            resume: None,
            sink: Some(Box::new(|c: Checkpoint| saved.lock().unwrap().push(c.step))),
            at_step: None,
        };
        simulate_with(algorithm, &p, &options(1), &control, checkpointing).unwrap();
        assert_eq!(
            saved.into_inner().unwrap(),
            vec![1],
            "{algorithm}: one checkpoint, after step 1"
        );
    }
}

/// The bytes of `c` with its format version set to `version`, digest
/// recomputed (a well-formed checkpoint of another format).
fn with_version(c: &Checkpoint, version: u32) -> Vec<u8> {
    let mut bytes = c.encode();
    let body = bytes.len() - 32;
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let digest = Sha256::digest(&bytes[..body]);
    bytes[body..].copy_from_slice(&digest);
    bytes
}

#[test]
fn foreign_and_damaged_checkpoints_are_refused_and_the_run_starts_over() {
    let p = params(100, 30, 4);
    let (base, saved) = run("optimized", &p, Width::Base, 1, None, Some(12));
    let good = &saved[0];
    let (_, of_reference) = run("reference", &p, Width::Base, 1, None, Some(12));
    let (_, of_other_seed) = run("optimized", &params(100, 30, 5), Width::Base, 1, None, Some(12));
    let mut other_build = good.clone();
    other_build.stamp.build.push_str("-changed");
    let mut flipped = good.encode();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let encoded = good.encode();

    // (what is wrong, the bytes, the refusal expected, what its message says)
    type Case = (
        &'static str,
        Vec<u8>,
        fn(&CheckpointRefused) -> bool,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "a flipped bit",
            flipped,
            |e| matches!(e, CheckpointRefused::Corrupted(_)),
            "SHA-256",
        ),
        (
            "cut short",
            encoded[..encoded.len() / 2].to_vec(),
            |e| matches!(e, CheckpointRefused::Corrupted(_)),
            "corrupted",
        ),
        (
            "not a checkpoint",
            b"{\"step\": 3}".repeat(8),
            |e| matches!(e, CheckpointRefused::Corrupted(_)),
            "header",
        ),
        (
            "another format",
            with_version(good, FORMAT_VERSION + 1),
            |e| matches!(e, CheckpointRefused::Format { .. }),
            "format version",
        ),
        (
            "another kernel",
            of_reference[0].encode(),
            |e| matches!(e, CheckpointRefused::Kernel { .. }),
            "kernel `reference`",
        ),
        (
            "another build",
            other_build.encode(),
            |e| matches!(e, CheckpointRefused::Build { .. }),
            "-changed",
        ),
        (
            "another seed",
            of_other_seed[0].encode(),
            |e| matches!(e, CheckpointRefused::Parameters),
            "parameters",
        ),
    ];
    for (what, bytes, kind, says) in cases {
        let (report, _) = run("optimized", &p, Width::Base, 1, Some(&bytes), None);
        let refused = report
            .resume_refused
            .as_ref()
            .unwrap_or_else(|| panic!("{what}: not refused"));
        assert!(kind(refused), "{what}: {refused:?}");
        assert!(refused.to_string().contains(says), "{what}: {refused}");
        assert_eq!(report.resumed_from_step, None, "{what}");
        assert!(
            bits(&base) == bits(&report),
            "{what}: the run from step 0 differs"
        );
    }
    // the stamp differs in nothing else, so the reference checkpoint is
    // also refused by the reference kernel with other parameters
    let err = of_reference[0]
        .check(
            &checkpoint::Stamp::of(lookup("reference").unwrap(), &params(100, 31, 4).effective()),
            &params(100, 31, 4).effective(),
        )
        .unwrap_err();
    assert_eq!(err, CheckpointRefused::Parameters);
    assert!(matches!(good.state, KernelState::Sorted { .. }));
}

/// The figures of docs/performance.md "Checkpoints": what saving one costs
/// at N = 10,000 and 100,000 (`optimized`, the kernel for large N): the
/// copy of the state the kernel hands over plus its encoding, and its
/// size. Run by hand (`cargo test --release --lib checkpoint_cost --
/// --ignored --nocapture`); it checks the checkpoint, never the time.
#[test]
#[ignore = "prints figures; run by hand with --ignored --nocapture"]
fn checkpoint_cost_at_ten_and_a_hundred_thousand_particles() {
    for n in [10_000u64, 100_000] {
        let p = params(n, 3, 11);
        let (_, saved) = run("optimized", &p, Width::Base, 1, None, Some(1));
        assert_eq!(saved.len(), 1);
        let mut best = f64::INFINITY;
        let mut size = 0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let copy = saved[0].clone();
            let bytes = copy.encode();
            best = best.min(t.elapsed().as_secs_f64());
            size = bytes.len();
            assert_eq!(Checkpoint::decode(&bytes).as_ref(), Ok(&saved[0]));
        }
        eprintln!(
            "checkpoint at N = {n}: {:.2} ms to copy and encode (best of 5), {size} bytes ({:.1} bytes a particle)",
            best * 1e3,
            size as f64 / n as f64
        );
    }
}
