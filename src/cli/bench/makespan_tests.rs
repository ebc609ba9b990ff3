//! Tests of the makespan simulation (simulated time: no wall clock).

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: MakespanArgs,
}

fn args(extra: &[&str]) -> MakespanArgs {
    Cli::parse_from(std::iter::once("makespan").chain(extra.iter().copied())).args
}

fn prior(kernel: &str) -> f64 {
    1.0 / prior_speed(kernel)
}

fn cluster(a: &MakespanArgs) -> SimCluster {
    SimCluster {
        capacities: a.capacities.clone(),
        speeds: a.speeds.clone(),
    }
}

fn run(b: Balancing, e: Expected, c: &SimCluster, tasks: &[SimTask]) -> f64 {
    simulate(strategy(b).as_mut(), e, c, tasks)
}

#[test]
fn the_default_batch_is_mixed_and_seeded() {
    let a = args(&[]);
    let t = batch(&a, &prior);
    assert_eq!(t.len(), 200);
    assert_eq!(
        batch(&a, &prior).iter().map(|t| t.seconds).sum::<f64>(),
        t.iter().map(|t| t.seconds).sum::<f64>()
    );
    for kernel in ["optimized", "reference"] {
        assert!(t.iter().any(|t| t.size.kernel == kernel));
    }
    assert!(t.iter().all(|t| (100..=3000).contains(&t.size.particles)));
    assert!(t.iter().all(|t| (100..=1000).contains(&t.size.steps)));
    assert!(t.iter().any(|t| t.size.particles < 500) && t.iter().any(|t| t.size.particles > 2500));
}

#[test]
fn every_strategy_runs_the_whole_batch_and_none_beats_the_lower_bound() {
    let a = args(&["--tasks", "60"]);
    let (c, t) = (cluster(&a), batch(&a, &prior));
    let bound = c.lower_bound(&t);
    let longest = t.iter().map(|t| t.seconds).fold(0.0, f64::max) / 1.0;
    for b in Balancing::ALL {
        let m = run(b, Expected::new(), &c, &t);
        assert!(m >= bound * (1.0 - 1e-9), "{}: {m} < {bound}", b.as_str());
        assert!(m >= longest * (1.0 - 1e-9));
    }
}

#[test]
fn shortest_expected_finish_is_within_ten_percent_of_the_bound_with_known_speeds() {
    // the target, in simulated time (deterministic, not wall time)
    let a = args(&[]);
    let (c, t) = (cluster(&a), batch(&a, &prior));
    let bound = c.lower_bound(&t);
    let m = run(Balancing::ShortestExpectedFinish, c.known(&prior), &c, &t);
    assert!(
        m / bound <= 1.10,
        "makespan {m:.2} s, bound {bound:.2} s: ratio {:.3}",
        m / bound
    );
    let rr = run(Balancing::RoundRobin, Expected::new(), &c, &t);
    assert!(m < rr, "{m} vs round_robin {rr}");
}

#[test]
fn bad_arguments_say_what_is_wrong() {
    assert!(check(&args(&[])).is_ok());
    let e = check(&args(&["--speeds", "1,1"])).unwrap_err();
    assert!(e.contains("one speed per worker"), "{e}");
    let e = check(&args(&["--capacities", "1,0,4"])).unwrap_err();
    assert!(e.contains("at least one slot"), "{e}");
    let e = check(&args(&["--particles", "3000,100"])).unwrap_err();
    assert!(e.contains("LOW ≤ HIGH"), "{e}");
    let e = check(&args(&["--noise", "1.5"])).unwrap_err();
    assert!(e.contains("--noise"), "{e}");
}
