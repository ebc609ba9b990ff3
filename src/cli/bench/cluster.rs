//! `orquesta bench cluster [trivial|ms|ingest|all]`: the workloads of
//! issue 12 on a local cluster of real processes, each printed as a table
//! (or, with `--json`, one JSON object per case, which
//! `bench/peers.sh` reads to set Orquesta beside Ray and Dask).
//!
//! The user's path (issue 21): the children run with `orquesta up`'s
//! defaults (INFO logs), the task file is put into `task_queues/` by a
//! rename (written beside it first, as the README recommends) and by a
//! plain copy, alternately (`--drop`), and the wall time ends when the
//! last result is on disk in `results/` (the last results file's write);
//! the last `completed_at` is given beside it. Each run also gives the
//! time from the drop to the first task's start on a worker, and the
//! orchestrator's CPU per task.
//!
//! - `trivial`: tiny tasks (`optimized`, N = 16, one step) in one dropped
//!   file, until every result is recorded: tasks/s.
//! - `ms`: ~1.6 ms tasks (`reference`, N = 100, 40 steps): the overhead
//!   per task, (wall − Σexec / slots) / tasks, where Σexec is what the
//!   workers measured around each simulation.
//! - `ingest` ([`super::ingest`]): a million-task file dropped → accepted,
//!   the orchestrator's memory, and the read endpoints with it stored.
//! - `workers SIZES` ([`super::workers`]): the costs by cluster size.
//!
//! Each run starts a fresh cluster (`--runs` repeats; runs vary, so the
//! median, min and max are printed). For `trivial` and `ms` the CPU
//! seconds the orchestrator and the workers used during the run, and the
//! orchestrator's busiest threads, are read from `/proc`: an orchestrator
//! near one full core while the workers idle is the bottleneck.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::local::{task_file, DropBy, LocalCluster};
use super::procfs::{self, CpuLine};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// Tiny tasks (N = 16, one step): tasks/s.
    Trivial,
    /// ~1.6 ms tasks (`reference`, N = 100, 40 steps): overhead per task.
    Ms,
    /// A million-task file: accepted tasks/s, memory, read latencies.
    Ingest,
    /// A mixed batch over workers of capacity 1, 2 and 4: makespan of each
    /// strategy against the lower bound (`bench makespan` with its
    /// defaults; `--tasks` sets the batch size).
    Makespan,
    /// How the costs grow with the number of workers (`SIZES`, e.g.
    /// 8,256,4000): joins, idle heartbeats, `/workers`, Prometheus, the
    /// dashboard, and tasks/s on real worker processes
    /// ([`super::workers`]; not part of `all`).
    Workers,
    /// Every case above but `workers`, in that order.
    All,
}

#[derive(Args, Debug)]
pub struct ClusterBenchArgs {
    /// Which workload.
    #[arg(value_enum, default_value = "all")]
    pub case: Case,
    /// For `workers`: the cluster sizes, one row each.
    #[arg(value_delimiter = ',', default_value = "8,256,4000")]
    pub sizes: Vec<usize>,
    /// For `workers`: sizes up to this are real worker processes joined
    /// with --join (and run the tasks); larger ones are ids served by the
    /// bench itself, one port each (membership only).
    #[arg(long, default_value_t = 256)]
    pub max_processes: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Slots (capacity) of each worker.
    #[arg(long, default_value_t = 1)]
    pub slots: usize,
    /// Tasks per run [default: trivial 10,000; ms 500; ingest 1,000,000].
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Runs of each case, each on a fresh cluster; median, min and max are
    /// printed.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// How the task file is put into the drop folder; `both` alternates
    /// rename and copy run by run (`--runs` of each).
    #[arg(long, value_enum, default_value = "both")]
    pub drop: DropChoice,
    /// One JSON object per case instead of the tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DropChoice {
    /// Written beside the folder, then renamed into it (the README's way).
    Rename,
    /// Written in place, as `cp` does.
    Copy,
    /// Rename and copy, alternately; the rename's figures lead.
    Both,
}

impl DropChoice {
    fn ways(self) -> &'static [DropBy] {
        match self {
            DropChoice::Rename => &[DropBy::Rename],
            DropChoice::Copy => &[DropBy::Copy],
            DropChoice::Both => &[DropBy::Rename, DropBy::Copy],
        }
    }
}

/// A workload of identical tasks (but for the seed) in one file.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub case: &'static str,
    pub algorithm: &'static str,
    pub particles: u64,
    pub steps: u64,
    pub default_tasks: usize,
}

pub const TRIVIAL: Workload = Workload {
    case: "trivial",
    algorithm: "optimized",
    particles: 16,
    steps: 1,
    default_tasks: 10_000,
};

pub const MS: Workload = Workload {
    case: "ms",
    algorithm: "reference",
    particles: 100,
    steps: 40,
    default_tasks: 500,
};

pub fn run(args: &ClusterBenchArgs) -> ExitCode {
    let cases: &[Case] = match args.case {
        Case::All => &[Case::Trivial, Case::Ms, Case::Ingest, Case::Makespan],
        Case::Trivial => &[Case::Trivial],
        Case::Ms => &[Case::Ms],
        Case::Ingest => &[Case::Ingest],
        Case::Makespan => &[Case::Makespan],
        Case::Workers => &[Case::Workers],
    };
    for case in cases {
        let outcome = match case {
            Case::Trivial => throughput(args, TRIVIAL),
            Case::Ms => throughput(args, MS),
            Case::Ingest => super::ingest::run(args),
            Case::Makespan => makespan(args),
            Case::Workers => super::workers::run(args),
            Case::All => unreachable!("expanded above"),
        };
        if let Err(e) = outcome {
            eprintln!("error: bench cluster {case:?}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The makespan case: `bench makespan` with its own defaults, but for
/// `--tasks`.
fn makespan(args: &ClusterBenchArgs) -> Result<(), String> {
    use clap::Parser;
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        makespan: super::MakespanArgs,
    }
    let mut m = Defaults::parse_from(["makespan"]).makespan;
    if let Some(tasks) = args.tasks {
        m.tasks = tasks;
    }
    if super::makespan(&m) == ExitCode::SUCCESS {
        Ok(())
    } else {
        Err("the makespan simulation failed (see above)".into())
    }
}

/// The median, min and max of some figures.
pub fn spread(values: &[f64]) -> Value {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    json!({"median": median, "min": v[0], "max": v[v.len() - 1]})
}

/// One run of a throughput case.
#[derive(Debug, Clone)]
pub struct RunFigures {
    pub tasks: usize,
    pub drop: DropBy,
    /// Drop to the last result on disk (the last results file written),
    /// seconds.
    pub wall: f64,
    /// Drop to the last `completed_at`, seconds.
    pub last_completed: Option<f64>,
    /// Drop to the first task's start on a worker, seconds.
    pub first_start: Option<f64>,
    pub completed: u64,
    pub failed: u64,
    /// Distinct tasks in the results files, and results seen twice.
    pub recorded: usize,
    pub duplicates: usize,
    /// Σ execution_time, seconds.
    pub exec_seconds: f64,
    pub slots_total: usize,
    /// CPU seconds during the run; `None` where `/proc` is not there.
    pub orchestrator_cpu: Option<f64>,
    pub workers_cpu: Option<f64>,
    pub orchestrator_threads: Vec<CpuLine>,
    /// Seconds spent ready but not running (starved by other processes)
    /// during the run.
    pub orchestrator_runq_wait: Option<f64>,
    pub workers_runq_wait: Option<f64>,
    /// Context switches of the orchestrator during the run.
    pub orchestrator_switches: Option<(u64, u64)>,
}

impl RunFigures {
    pub fn tasks_per_second(&self) -> f64 {
        self.tasks as f64 / self.wall
    }

    pub fn exec_ms_per_task(&self) -> f64 {
        self.exec_seconds / self.tasks as f64 * 1e3
    }

    /// (wall − Σexec / slots) / tasks: what each task cost beyond its own
    /// simulation, with every slot counted busy.
    pub fn overhead_us_per_task(&self) -> f64 {
        (self.wall - self.exec_seconds / self.slots_total as f64) / self.tasks as f64 * 1e6
    }

    /// The orchestrator's CPU per task, µs.
    pub fn orchestrator_us_per_task(&self) -> Option<f64> {
        self.orchestrator_cpu.map(|c| c / self.tasks as f64 * 1e6)
    }

    pub fn first_start_ms(&self) -> Option<f64> {
        self.first_start.map(|s| s * 1e3)
    }

    fn to_json(&self) -> Value {
        json!({
            "tasks": self.tasks, "drop": self.drop, "wall_seconds": self.wall,
            "last_completed_seconds": self.last_completed,
            "first_start_ms": self.first_start_ms(),
            "orchestrator_cpu_us_per_task": self.orchestrator_us_per_task(),
            "tasks_per_second": self.tasks_per_second(),
            "exec_ms_per_task": self.exec_ms_per_task(),
            "overhead_us_per_task": self.overhead_us_per_task(),
            "completed": self.completed, "failed": self.failed,
            "recorded": self.recorded, "duplicates": self.duplicates,
            "orchestrator_cpu_seconds": self.orchestrator_cpu,
            "workers_cpu_seconds": self.workers_cpu,
            "orchestrator_runqueue_wait_seconds": self.orchestrator_runq_wait,
            "workers_runqueue_wait_seconds": self.workers_runq_wait,
            "orchestrator_context_switches": self.orchestrator_switches
                .map(|(v, i)| json!({"voluntary": v, "involuntary": i})),
            "orchestrator_threads": self.orchestrator_threads.iter().take(6)
                .map(|t| json!({"name": t.name, "cpu_seconds": t.seconds})).collect::<Vec<_>>(),
        })
    }
}

/// (CPU seconds, run-queue wait seconds) of the orchestrator and of the
/// workers together, so far.
fn sample(cluster: &LocalCluster) -> [Option<f64>; 4] {
    let pid = cluster.orchestrator_pid();
    let workers = cluster.worker_pids();
    [
        procfs::cpu_seconds(pid),
        workers.iter().map(|&w| procfs::cpu_seconds(w)).sum(),
        procfs::runqueue_wait(pid),
        workers.iter().map(|&w| procfs::runqueue_wait(w)).sum(),
    ]
}

/// One run: a fresh cluster, one file of `tasks` tasks of `w` put into
/// the drop folder `by` a copy or a rename, until every result is on disk.
pub fn throughput_run(
    workers: usize,
    slots: usize,
    tasks: usize,
    w: Workload,
    by: DropBy,
) -> Result<RunFigures, String> {
    let cluster = LocalCluster::start(workers, slots)?;
    let text = task_file("bulk", tasks, w.algorithm, w.particles, w.steps);
    let pid = cluster.orchestrator_pid();
    let (before, threads0, switches0) = (
        sample(&cluster),
        procfs::threads(pid),
        procfs::context_switches(pid),
    );
    let (t0, dropped_at) = cluster.drop_as("bulk.json", &text, by)?;
    // each poll of /stats costs the orchestrator a count of the tasks (a
    // thread of its blocking pool, `tokio-rt-worker` in the thread list):
    // every 50 ms, as `bench e2e` always did
    let ended = cluster.wait_ended(tasks as u64, Duration::from_millis(50), Duration::from_secs(900))?;
    let recorded = cluster.wait_recorded(tasks, Duration::from_secs(60))?;
    let seen = t0.elapsed().as_secs_f64();
    let (after, threads1, switches1) = (
        sample(&cluster),
        procfs::threads(pid),
        procfs::context_switches(pid),
    );
    let used = |i: usize| before[i].zip(after[i]).map(|(a, b)| b - a);
    // the last results file's write (to the nanosecond), not the poll that
    // read it (up to 20 ms later); the poll's time where the clock disagrees
    let since_drop = |t: Option<f64>| t.map(|t| t - dropped_at).filter(|d| *d > 0.0 && *d <= seen);
    let wall = since_drop(recorded.last_write).unwrap_or(seen);
    // `completed_at` and the start are stamped to the millisecond: compare
    // them with the drop truncated the same way
    let dropped_ms = (dropped_at * 1e3).floor() / 1e3;
    let since_ms = |t: Option<f64>| t.map(|t| t - dropped_ms).filter(|d| *d >= 0.0 && *d <= seen);
    Ok(RunFigures {
        tasks,
        drop: by,
        wall,
        last_completed: since_ms(recorded.last_end),
        first_start: since_ms(recorded.first_start),
        completed: ended.completed,
        failed: ended.failed + ended.cancelled,
        recorded: recorded.tasks,
        duplicates: recorded.duplicates,
        exec_seconds: recorded.exec_seconds,
        slots_total: workers.max(1) * slots.max(1),
        orchestrator_cpu: used(0),
        workers_cpu: used(1),
        orchestrator_runq_wait: used(2),
        workers_runq_wait: used(3),
        orchestrator_threads: procfs::thread_delta(&threads0, &threads1),
        orchestrator_switches: switches0.zip(switches1).map(|(a, b)| (b.0 - a.0, b.1 - a.1)),
    })
}

/// Median, min and max of each figure over some runs.
fn summary_of(runs: &[RunFigures]) -> Value {
    let pick = |f: &dyn Fn(&RunFigures) -> f64| spread(&runs.iter().map(f).collect::<Vec<_>>());
    let nan = f64::NAN;
    json!({
        "tasks_per_second": pick(&RunFigures::tasks_per_second),
        "overhead_us_per_task": pick(&RunFigures::overhead_us_per_task),
        "exec_ms_per_task": pick(&RunFigures::exec_ms_per_task),
        "wall_seconds": pick(&|r| r.wall),
        "last_completed_seconds": pick(&|r| r.last_completed.unwrap_or(nan)),
        "first_start_ms": pick(&|r| r.first_start_ms().unwrap_or(nan)),
        "orchestrator_cpu_us_per_task": pick(&|r| r.orchestrator_us_per_task().unwrap_or(nan)),
        "orchestrator_cpu_seconds": pick(&|r| r.orchestrator_cpu.unwrap_or(nan)),
        "workers_cpu_seconds": pick(&|r| r.workers_cpu.unwrap_or(nan)),
        "orchestrator_runqueue_wait_seconds": pick(&|r| r.orchestrator_runq_wait.unwrap_or(nan)),
        "workers_runqueue_wait_seconds": pick(&|r| r.workers_runq_wait.unwrap_or(nan)),
        "runs": runs.iter().map(RunFigures::to_json).collect::<Vec<_>>(),
    })
}

fn throughput(args: &ClusterBenchArgs, w: Workload) -> Result<(), String> {
    let tasks = args.tasks.unwrap_or(w.default_tasks).max(1);
    let (workers, slots) = (args.workers.max(1), args.slots.max(1));
    let ways = args.drop.ways();
    if !args.json {
        println!(
            "cluster {}: {tasks} tasks ({}, N={}, {} step{}) in one file put into task_queues/ by {}, {workers} workers x {slots} slot{}, INFO logs, until every result is on disk",
            w.case,
            w.algorithm,
            w.particles,
            w.steps,
            if w.steps == 1 { "" } else { "s" },
            ways.iter().map(|d| d.name()).collect::<Vec<_>>().join(" and by "),
            if slots == 1 { "" } else { "s" },
        );
        println!(
            "  {:>4} {:>6} {:>8} {:>9} {:>8} {:>11} {:>9} {:>9} {:>10} {:>8} {:>8} {:>11}  busiest orchestrator threads (cpu s)",
            "run", "drop", "wall s", "tasks/s", "exec ms", "overhead µs", "1st start", "last done", "orch µs/t", "orch cpu", "work cpu", "recorded"
        );
        println!(
            "  {:>4} {:>6} {:>8} {:>9} {:>8} {:>11} {:>9} {:>9}",
            "", "", "to disk", "", "per task", "per task", "ms", "s"
        );
    }
    let mut runs = Vec::new();
    // alternated, so that a slow spell of a shared machine falls on both
    for i in 1..=args.runs.max(1) {
        for &by in ways {
            let r = throughput_run(workers, slots, tasks, w, by)?;
            if !args.json {
                print_run(i, &r);
            }
            runs.push(r);
        }
    }
    let all_recorded = runs
        .iter()
        .all(|r| r.recorded == r.tasks && r.duplicates == 0 && r.failed == 0);
    let of = |by: DropBy| runs.iter().filter(|r| r.drop == by).cloned().collect::<Vec<_>>();
    // the first way leads: its figures are the case's
    let mut summary = summary_of(&of(ways[0]));
    let by_drop: serde_json::Map<String, Value> = ways
        .iter()
        .map(|&by| (by.name().to_string(), summary_of(&of(by))))
        .collect();
    if let Value::Object(m) = &mut summary {
        for (k, v) in [
            ("case", json!(w.case)),
            ("algorithm", json!(w.algorithm)),
            ("particles", json!(w.particles)),
            ("steps", json!(w.steps)),
            ("workers", json!(workers)),
            ("slots", json!(slots)),
            ("tasks", json!(tasks)),
            ("drop", json!(ways[0])),
            ("all_recorded_once", json!(all_recorded)),
            ("by_drop", Value::Object(by_drop.clone())),
        ] {
            m.insert(k.into(), v);
        }
    }
    if args.json {
        println!("{summary}");
    } else {
        if runs.len() > 1 {
            for by in ways {
                let one = &by_drop[by.name()];
                for (label, key) in [("median", "median"), ("min", "min"), ("max", "max")] {
                    let f = |k: &str| one[k][key].as_f64().unwrap_or(f64::NAN);
                    println!(
                        "  {label:>6} {:>4} {:>8.3} {:>9.0} {:>8.3} {:>11.1} {:>9.1} {:>9.3} {:>10.1}",
                        by.name(),
                        f("wall_seconds"),
                        f("tasks_per_second"),
                        f("exec_ms_per_task"),
                        f("overhead_us_per_task"),
                        f("first_start_ms"),
                        f("last_completed_seconds"),
                        f("orchestrator_cpu_us_per_task"),
                    );
                }
            }
        }
        println!(
            "  every task recorded exactly once, none failed: {}",
            if all_recorded { "yes" } else { "NO" }
        );
        println!();
    }
    if all_recorded {
        Ok(())
    } else {
        Err("some tasks failed, were not recorded, or were recorded twice (see the table)".into())
    }
}

fn print_run(i: usize, r: &RunFigures) {
    let figure = |c: Option<f64>, digits: usize| c.map_or("-".to_string(), |s| format!("{s:.digits$}"));
    let threads: Vec<String> = r
        .orchestrator_threads
        .iter()
        .take(3)
        .map(|t| format!("{} {:.2}", t.name, t.seconds))
        .collect();
    println!(
        "  {i:>4} {:>6} {:>8.3} {:>9.0} {:>8.3} {:>11.1} {:>9} {:>9} {:>10} {:>8} {:>8} {:>11}  {}",
        r.drop.name(),
        r.wall,
        r.tasks_per_second(),
        r.exec_ms_per_task(),
        r.overhead_us_per_task(),
        figure(r.first_start_ms(), 1),
        figure(r.last_completed, 3),
        figure(r.orchestrator_us_per_task(), 1),
        figure(r.orchestrator_cpu, 2),
        figure(r.workers_cpu, 2),
        format!("{}/{}", r.recorded, r.tasks),
        threads.join(", ")
    );
    if r.duplicates > 0 || r.failed > 0 {
        println!(
            "       {} recorded twice, {} failed or cancelled",
            r.duplicates, r.failed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_gives_median_min_max_of_finite_values() {
        assert_eq!(
            spread(&[3.0, 1.0, 2.0]),
            json!({"median": 2.0, "min": 1.0, "max": 3.0})
        );
        assert_eq!(
            spread(&[4.0, 1.0, f64::NAN, 2.0, 3.0]),
            json!({"median": 2.5, "min": 1.0, "max": 4.0})
        );
        assert_eq!(spread(&[f64::NAN]), Value::Null);
    }

    #[test]
    fn overhead_counts_every_slot_busy() {
        let r = RunFigures {
            tasks: 500,
            drop: DropBy::Rename,
            wall: 0.5,
            last_completed: Some(0.49),
            first_start: Some(0.004),
            completed: 500,
            failed: 0,
            recorded: 500,
            duplicates: 0,
            exec_seconds: 0.8, // 1.6 ms each
            slots_total: 2,
            orchestrator_cpu: Some(0.05),
            workers_cpu: None,
            orchestrator_threads: Vec::new(),
            orchestrator_runq_wait: None,
            workers_runq_wait: None,
            orchestrator_switches: None,
        };
        // (0.5 − 0.8 / 2) / 500 = 200 µs
        assert!((r.overhead_us_per_task() - 200.0).abs() < 1e-6);
        assert!((r.tasks_per_second() - 1000.0).abs() < 1e-9);
        assert!((r.exec_ms_per_task() - 1.6).abs() < 1e-9);
        // 0.05 s of orchestrator CPU over 500 tasks = 100 µs each
        assert!((r.orchestrator_us_per_task().unwrap() - 100.0).abs() < 1e-6);
        assert!((r.first_start_ms().unwrap() - 4.0).abs() < 1e-9);
    }
}
