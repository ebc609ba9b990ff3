//! Bit identity of the `optimized` kernel across vector widths ([`simd`]):
//! every width this CPU runs, times thread counts, times boxes that take
//! each path of the kernel, against the 128-bit baseline, compared bit for
//! bit (positions, velocities and every energy of the result).

use super::simd::{self, Width};
use super::*;

/// Runs `optimized` at width `w` on `threads` threads.
fn run_at(w: Width, p: &SimParams, threads: usize) -> SimReport {
    let options = RunOptions {
        threads,
        limits: Limits::default(),
    };
    simd::with_width(w, || simulate("optimized", p, &options, &Control::new())).expect("valid parameters")
}

/// Everything a result holds that physics decides, as bits: `==` on f64
/// would let -0.0 pass for 0.0.
fn bits(r: &SimReport) -> Vec<u64> {
    let state = r.state.pos.iter().chain(&r.state.vel).flatten();
    super::tests::physics_bits(&r.metrics)
        .into_iter()
        .chain(state.map(|v| v.to_bits()))
        .chain([r.state.box_len.to_bits()])
        .collect()
}

/// The widths this CPU runs, told on stderr so that a test log shows
/// which were exercised (`cargo test -- --nocapture`).
fn widths() -> Vec<Width> {
    let widths = Width::supported();
    #[cfg(target_arch = "x86_64")]
    {
        // the detection the kernel relies on, checked here apart from it
        assert_eq!(
            widths.contains(&Width::Avx2),
            std::arch::is_x86_feature_detected!("avx2")
        );
    }
    let names: Vec<_> = widths.iter().map(|w| w.name()).collect();
    eprintln!("vector widths exercised: {}", names.join(", "));
    widths
}

/// Every width, every thread count, the same bits as the baseline on one
/// thread.
fn assert_same_bits_everywhere(what: &str, p: &SimParams) {
    let base = run_at(Width::Base, p, 1);
    assert_eq!(base.status, SimStatus::Completed, "{what}");
    assert_eq!(base.metrics.steps_completed, p.num_steps, "{what}");
    let want = bits(&base);
    for w in widths() {
        for threads in [1, 2, 3] {
            let got = run_at(w, p, threads);
            assert!(
                want == bits(&got),
                "{what}: {w} on {threads} threads changed a bit of the result"
            );
        }
    }
}

#[test]
fn every_width_gives_the_baseline_bits_at_the_defaults() {
    // N not a multiple of any width (the last list steps take the 128-bit
    // loop), a box too small for cells (16: the all-pairs strip), and boxes
    // large enough for several strips and threads (≥ 4096); 300 steps move
    // particles further than half the skin, so the lists are rebuilt
    for (n, steps) in [(16u64, 300u64), (30, 300), (257, 300), (1234, 300), (5003, 120)] {
        let p = SimParams {
            num_particles: n,
            num_steps: steps,
            seed: n,
            // the series and its averages are physics too
            thermo_every: Some(25),
            ..SimParams::default()
        };
        assert_same_bits_everywhere(&format!("N={n}"), &p);
    }
}

#[test]
fn every_width_gives_the_baseline_bits_in_dilute_dense_and_hot_boxes() {
    let cases = [
        // dilute: the cell grid is capped at 4 cells a particle, wide cells
        ("dilute", 2000, 0.005, 1.0, 2.5),
        // dense, another cut-off: long lists, many masked lanes
        ("dense", 1500, 0.9, 0.8, 3.0),
        // hot: particles cross the boundary and lists are rebuilt often
        ("hot", 777, 0.5, 4.0, 2.5),
    ];
    for (what, n, density, temperature, cutoff) in cases {
        let p = SimParams {
            num_particles: n,
            num_steps: 200,
            seed: 11,
            density: Some(density),
            temperature: Some(temperature),
            dt: Some(0.002),
            cutoff: Some(cutoff),
            thermo_every: Some(7),
        };
        assert_same_bits_everywhere(what, &p);
    }
}
