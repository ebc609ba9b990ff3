//! The `orquesta` command line: parses arguments and calls into the
//! library. Each subcommand is one function here or one module elsewhere.

pub mod bench;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod completions;
pub mod gen;
pub mod interactive;
pub mod ping;
pub mod place;
pub mod probe;
pub mod run;
pub mod schema;
pub mod status;
pub mod submit;
pub mod table;
pub mod validate;
pub mod worker;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use crate::model::TaskResult;
use crate::sim::{self, Control, Limits, RunOptions, SimError, SimParams, SimStatus};

#[derive(Parser, Debug)]
#[command(
    name = "orquesta",
    version,
    about = "A distributed task orchestrator for particle simulations",
    long_about = "Orquesta runs batches of 2-D Lennard-Jones particle simulations: drop task \
                  files into task_queues/, and an orchestrator spreads them over worker nodes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one simulation here and print its result JSON (the object a
    /// worker returns for that task).
    #[command(
        after_help = "Examples:\n  orquesta sim --particles 100 --steps 500 --seed 123\n  \
                            orquesta sim --particles 100000 --steps 200 --seed 1 --algorithm optimized --threads 2"
    )]
    Sim(SimArgs),
    /// Start a worker node: runs simulation tasks sent to it over HTTP
    /// (the seed's worker_service.py).
    #[command(
        after_help = "Examples:\n  orquesta worker --worker-id worker1 --port 5001\n  \
                            WORKER_ID=worker2 WORKER_PORT=5002 orquesta worker\n  \
                            orquesta worker --worker-id w1 --host 0.0.0.0 --port 5001 --capacity 4\n\n\
                            Try it:\n  curl -X POST localhost:5001/execute -d '{\"task_id\": \"t1\", \"algorithm\": \"python\", \
                            \"parameters\": {\"num_particles\": 100, \"num_steps\": 500, \"seed\": 123}}'"
    )]
    Worker(crate::cli::worker::WorkerArgs),
    /// Start the orchestrator: watches task_queues/, dispatches to the
    /// workers of config_workers.json, serves the REST API on port 5000.
    #[command(
        after_help = "Examples:\n  orquesta orchestrator\n  orquesta orchestrator --port 5000 --config config_workers.json\n\n\
                            Then drop a file:  cp tareas_manuales_ejemplo.json task_queues/\n\
                            and watch:         curl localhost:5000/stats"
    )]
    Orchestrator(OrchestratorArgs),
    /// The orchestrator plus a worker process for every entry of
    /// config_workers.json on this machine: a local cluster in one command.
    #[command(after_help = "Examples:\n  orquesta up\n  orquesta up --config my_workers.json --port 5050")]
    Up(OrchestratorArgs),
    /// Run one task file on a temporary local cluster, print a summary and
    /// exit (non-zero if any task failed). Results go to results/.
    #[command(
        after_help = "Examples:\n  orquesta run tareas_manuales_ejemplo.json\n  orquesta run my_batch.json --config config_workers.json"
    )]
    Run(RunArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write a task file: step by step in a terminal, or from flags in
    /// scripts (the seed's manual_task_generator.py).
    #[command(
        long_about = "Write a task file in the seed's format. Run in a terminal without task flags, it asks                       one question per setting (Enter takes the default shown), checks every answer, shows                       a preview and asks for confirmation. With any task flag it asks nothing: omitted flags                       take their defaults. Task ids get a batch prefix made of the time and random bits                       (or --prefix), so files of different runs can always be dropped together. The file                       is written to a temporary name and renamed, so the orchestrator never sees half of it.",
        after_help = "Examples:\n  orquesta gen                                    # step by step, in a terminal\n  \
                      orquesta gen --count 50 --algorithm mix --particles 100..2000 --steps 500 --priority mix\n  \
                      orquesta gen -c 10 -a cython -n 1000 -s 100..300 -p high --seed 42 --prefix run1 -o run1.json\n  \
                      orquesta gen --count 3 --output -                # print instead of writing\n\n\
                      The file lands in task_queues/tasks_<YYYYMMDD_HHMMSS>.json unless --output says otherwise."
    )]
    Gen(crate::cli::gen::GenArgs),
    /// Check task files with the orchestrator's own validator: every
    /// problem with its path in the JSON, or a one-line summary.
    #[command(
        after_help = "Examples:\n  orquesta validate tareas_manuales_ejemplo.json\n  \
                      orquesta validate task_queues/*.json      # also finds ids that two files share\n  \
                      orquesta gen --count 5 --output - | orquesta validate -\n\n\
                      Exit status: 0 when every file is valid, 1 otherwise. A problem reads\n  \
                      tasks[7].parameters.num_particles: expected a whole number ≥ 13, found 5: …"
    )]
    Validate(crate::cli::validate::ValidateArgs),
    /// Print the JSON Schema of a task file (also in
    /// schema/task_file.schema.json) for editors that validate as you type.
    #[command(
        after_help = "Examples:\n  orquesta schema > schema/task_file.schema.json\n  \
                            orquesta schema | python -m json.tool"
    )]
    Schema,
    /// Validate a task file, then drop it into task_queues/ (or POST it to
    /// --url); --wait follows it with a progress bar to the end.
    #[command(
        after_help = "Examples:\n  orquesta submit my_batch.json                       # drop it into task_queues/\n  \
                      orquesta submit my_batch.json --wait                # and follow it to the end\n  \
                      orquesta submit my_batch.json --url http://10.0.0.5:5000 --wait --timeout 3600\n\n\
                      Exit status: 0 when submitted (with --wait: when every task completed), 1 otherwise."
    )]
    Submit(crate::cli::submit::SubmitArgs),
    /// The orchestrator at a glance: workers (state, load, tasks done, mean
    /// time) and the queue by status and priority.
    #[command(
        after_help = "Examples:\n  orquesta status\n  orquesta status --watch          # redraw every 2 s\n  \
                            orquesta status --url http://10.0.0.5:5000 --json | jq .stats.tasks"
    )]
    Status(crate::cli::status::StatusArgs),
    /// Check that the orchestrator and every worker answer (the seed's
    /// test_communication.py): round-trip times and what fails.
    #[command(
        after_help = "Examples:\n  orquesta ping\n  orquesta ping --url http://10.0.0.5:5000 --config config_workers.json\n\n\
                            Exit status: 0 when everything answered with this version, 1 otherwise."
    )]
    Ping(crate::cli::ping::PingArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  orquesta completions bash > ~/.local/share/bash-completion/completions/orquesta\n  \
                            orquesta completions zsh > \"${fpath[1]}/_orquesta\"\n  \
                            orquesta completions fish > ~/.config/fish/completions/orquesta.fish"
    )]
    Completions(crate::cli::completions::CompletionsArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct OrchestratorArgs {
    /// Address of the REST API [env ORCHESTRATOR_HOST, default 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port of the REST API; 0 = any free port [env ORCHESTRATOR_PORT, default 5000].
    #[arg(long)]
    pub port: Option<u16>,
    /// The workers file [env WORKERS_CONFIG, default config_workers.json].
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The task file (the seed's format).
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub common: OrchestratorArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load and validate .env and config_workers.json, print the effective
    /// settings, and check whether each worker answers (the seed's
    /// `python config_manager.py`).
    Check(OrchestratorArgs),
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SimArgs {
    /// Number of particles N.
    #[arg(long, short = 'n')]
    pub particles: u64,
    /// Number of time steps (0 gives the initial state).
    #[arg(long, short = 's')]
    pub steps: u64,
    /// Seed of the initial velocities (any 64-bit unsigned integer).
    #[arg(long)]
    pub seed: u64,
    /// Kernel: reference, optimized, or the seed's aliases python, cython.
    #[arg(long, short = 'a', default_value = "optimized")]
    pub algorithm: String,
    /// Threads for the optimized kernel (default: every core). Results do
    /// not depend on it.
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Reduced density ρ [default: 0.5].
    #[arg(long)]
    pub density: Option<f64>,
    /// Initial temperature T0 [default: 1.0].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Time step [default: 0.005].
    #[arg(long)]
    pub dt: Option<f64>,
    /// Cut-off radius [default: 2.5].
    #[arg(long)]
    pub cutoff: Option<f64>,
    /// Task id to put in the result.
    #[arg(long, default_value = "local")]
    pub task_id: String,
    /// Print the JSON on one line.
    #[arg(long)]
    pub compact: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Particle-steps per second of each kernel over several N, on one
    /// thread and on all threads.
    #[command(after_help = "Example:\n  orquesta bench sim --sizes 100,1000,10000,100000")]
    Sim(bench::SimBenchArgs),
    /// Requests per second of tiny tasks on a worker's /execute.
    #[command(after_help = "Example:\n  orquesta bench worker --requests 20000 --concurrency 8")]
    Worker(bench::WorkerBenchArgs),
    /// End-to-end tasks/s of tiny tasks dropped as one file on a local
    /// cluster of separate processes, and drop-to-first-dispatch latency.
    #[command(after_help = "Example:\n  orquesta bench e2e --tasks 10000 --workers 2 --capacity 8")]
    E2e(bench::E2eBenchArgs),
}

pub fn main() -> ExitCode {
    // .env first, so that flags > environment > .env
    let dotenv_problems = crate::config::load_dotenv(std::path::Path::new(".env"));
    let cli = Cli::parse();
    for p in dotenv_problems {
        eprintln!("warning: {p}");
    }
    match cli.command {
        Command::Sim(args) => run_sim(&args),
        Command::Worker(args) => crate::cli::worker::run(&args),
        Command::Orchestrator(args) => crate::cli::commands::orchestrator(&args),
        Command::Up(args) => crate::cli::commands::up(&args),
        Command::Run(args) => crate::cli::commands::run(&args),
        Command::Config(ConfigCommand::Check(args)) => crate::cli::commands::config_check(&args),
        Command::Bench(BenchCommand::Sim(args)) => bench::sim(&args),
        Command::Bench(BenchCommand::Worker(args)) => bench::worker(&args),
        Command::Bench(BenchCommand::E2e(args)) => bench::e2e(&args),
        Command::Gen(args) => crate::cli::gen::run(&args),
        Command::Validate(args) => crate::cli::validate::run(&args),
        Command::Schema => crate::cli::schema::run(),
        Command::Submit(args) => crate::cli::submit::run(&args),
        Command::Status(args) => crate::cli::status::run(&args),
        Command::Ping(args) => crate::cli::ping::run(&args),
        Command::Completions(args) => crate::cli::completions::run(&args),
    }
}

pub use crate::util::machine::available_threads;

fn run_sim(args: &SimArgs) -> ExitCode {
    let params = SimParams {
        num_particles: args.particles,
        num_steps: args.steps,
        seed: args.seed,
        density: args.density,
        temperature: args.temperature,
        dt: args.dt,
        cutoff: args.cutoff,
    };
    let options = RunOptions {
        threads: args.threads.unwrap_or_else(available_threads).max(1),
        limits: Limits::default(),
    };
    let control = Control::new();
    match sim::simulate(&args.algorithm, &params, &options, &control) {
        Ok(report) => {
            let result =
                TaskResult::from_report(&args.task_id, &args.algorithm, parameters_json(&params), &report);
            let text = if args.compact {
                serde_json::to_string(&result)
            } else {
                serde_json::to_string_pretty(&result)
            };
            println!("{}", text.expect("a result always serialises"));
            if report.status == SimStatus::Completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            match err {
                SimError::InvalidParameters(errors) => {
                    eprintln!("error: invalid parameters");
                    for e in errors {
                        eprintln!("  {}: {}", flag_of(e.field), e.message);
                    }
                }
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(2)
        }
    }
}

/// The flag a parameter comes from, so messages point at what to change.
fn flag_of(field: &str) -> String {
    match field {
        "num_particles" => "--particles".into(),
        "num_steps" => "--steps".into(),
        other => format!("--{other}"),
    }
}

/// The `parameters` object of the task that `orquesta sim` runs.
fn parameters_json(p: &SimParams) -> Value {
    let mut map = Map::new();
    map.insert("num_particles".into(), json!(p.num_particles));
    map.insert("num_steps".into(), json!(p.num_steps));
    map.insert("seed".into(), json!(p.seed));
    for (name, value) in [
        ("density", p.density),
        ("temperature", p.temperature),
        ("dt", p.dt),
        ("cutoff", p.cutoff),
    ] {
        if let Some(v) = value {
            map.insert(name.into(), json!(v));
        }
    }
    Value::Object(map)
}
