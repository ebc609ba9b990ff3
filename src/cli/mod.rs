//! The `orquesta` command line: the clap `Cli`/`Command` enums and the
//! dispatch in [`main`]. Every subcommand is one file beside this one
//! (`sim.rs`, `orchestrator.rs`, `up.rs`, `run.rs`, `config_check.rs`, …;
//! benches under `bench/`); `serve.rs` holds what the serving ones share,
//! and `client.rs`, `cluster.rs` (with `local_workers.rs`), `table.rs`, `interactive.rs`, `place.rs`
//! are helpers of several.

pub mod alloc;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod completions;
pub mod config_check;
pub mod config_docs;
pub mod console;
pub mod gen;
pub mod gen_study;
pub mod interactive;
mod local_workers;
pub mod orchestrator;
pub mod parquet_out;
pub mod ping;
pub mod place;
pub mod purge;
pub mod report;
pub mod results;
pub mod run;
pub mod schema;
mod serve;
pub mod sim;
pub mod status;
pub mod submit;
pub mod table;
pub mod up;
pub mod validate;
pub mod worker;
pub mod workers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use self::orchestrator::OrchestratorArgs;
pub use self::run::RunArgs;
pub use self::sim::SimArgs;

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
    /// The cluster's token (ORQUESTA_TOKEN), sent by every command that
    /// talks HTTP and required by the servers this starts; other users
    /// can see it in `ps`: prefer --token-file or the environment.
    #[arg(long, global = true, value_name = "TOKEN", value_parser = parse_token, conflicts_with = "token_file")]
    pub token: Option<crate::util::token::Token>,
    /// A file holding the cluster's token (ORQUESTA_TOKEN_FILE).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

fn parse_token(s: &str) -> Result<crate::util::token::Token, String> {
    crate::util::token::Token::new(s).ok_or_else(|| "the token is empty".to_string())
}

/// `--token`/`--token-file` over `ORQUESTA_TOKEN`/`ORQUESTA_TOKEN_FILE`
/// (the flag wins, the other variable is dropped), put into this
/// process's environment, where the settings of a server started here and
/// the workers `up`/`run` spawn read it; then the token and the trusted
/// CA (`ORQUESTA_TLS_CA`) of the HTTP client.
/// Called before any thread starts.
fn apply_token_flags(cli: &Cli) -> Result<(), String> {
    use crate::util::token::{token_from_env, TOKEN_FILE_VAR, TOKEN_VAR};
    if let Some(t) = &cli.token {
        std::env::remove_var(TOKEN_FILE_VAR);
        std::env::set_var(TOKEN_VAR, t.expose());
    }
    if let Some(path) = &cli.token_file {
        std::env::remove_var(TOKEN_VAR);
        std::env::set_var(TOKEN_FILE_VAR, path);
    }
    let env = crate::util::settings::process_env();
    client::use_token(token_from_env(&env).map_err(|e| e.to_string())?);
    // only what the command line trusts; a server's certificate and key
    // are checked (with every other setting) when it starts
    let mut ca_only = env;
    ca_only.retain(|k, _| k == crate::util::tls::CA_VAR);
    client::use_tls(&crate::util::tls::tls_from_env(&ca_only).map_err(|p| p.join("; "))?);
    Ok(())
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
    #[command(
        after_help = "Examples:\n  orquesta up\n  orquesta up --config my_workers.json --port 5050\n  orquesta up --verbose      # every log line of every process here too"
    )]
    Up(crate::cli::up::UpArgs),
    /// Run one task file on a temporary local cluster, print a summary and
    /// exit (non-zero if any task failed). Results go to --results DIR
    /// (default results/); everything else stays in a temporary folder.
    #[command(
        after_help = "Examples:\n  orquesta run tareas_manuales_ejemplo.json\n  orquesta run my_batch.json --config config_workers.json\n  orquesta run my_batch.json --results out/   # beside a running cluster, without touching its files"
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
        long_about = "Write a task file in the seed's format. Run in a terminal without task flags, it asks \
                       one question per setting (Enter takes the default shown), checks every answer, shows \
                       a preview and asks for confirmation. With any task flag it asks nothing: omitted flags \
                       take their defaults. Task ids get a batch prefix made of the time and random bits \
                       (or --prefix), so files of different runs can always be dropped together. The file \
                       is written to a temporary name and renamed, so the orchestrator never sees half of it.",
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
                      orquesta gen --count 5 --output - | orquesta validate -\n  \
                      orquesta validate tareas.json --url http://127.0.0.1:5000   # ids it already knows?\n\n\
                      Exit status: 0 every file is valid (and, with --url, none of its ids is known); 1 a file \
                      is invalid or cannot be read; 3 valid, but the orchestrator already knows some of its ids \
                      (dropped, the file would be rejected whole); 4 --url was given but the orchestrator could \
                      not be asked. A problem reads\n  \
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
    /// The orchestrator's workers: source (config or joined), state and
    /// why, load/capacity, tasks done and failed, mean time, address.
    #[command(
        after_help = "Examples:\n  orquesta workers\n  orquesta workers --url http://10.0.0.5:5000\n  \
                            orquesta workers --json | jq '.workers[] | select(.state == \"down\") | .id'"
    )]
    Workers(crate::cli::workers::WorkersArgs),
    /// Take a worker out for maintenance: no new tasks go to it, running
    /// ones finish, then it is drained and can be stopped.
    #[command(
        after_help = "Examples:\n  orquesta drain worker1\n  orquesta workers          # wait until worker1 shows drained, then stop it\n  \
                            orquesta drain node07 --url http://10.0.0.5:5000\n\n\
                            Exit status: 0 when the orchestrator accepted it, 1 otherwise (e.g. no such worker)."
    )]
    Drain(crate::cli::workers::WorkerActionArgs),
    /// Give a drained (or draining) worker tasks again.
    #[command(
        after_help = "Examples:\n  orquesta resume worker1\n  orquesta resume node07 --url http://10.0.0.5:5000\n\n\
                            Exit status: 0 when the orchestrator accepted it, 1 otherwise (e.g. no such worker)."
    )]
    Resume(crate::cli::workers::WorkerActionArgs),
    /// Forget old history: ended tasks whose end is before DATE (once their
    /// records are in results/), through the running orchestrator.
    #[command(
        after_help = "Examples:\n  orquesta purge --before 2024-01-01 --dry-run     # how many would go\n  \
                            orquesta purge --before 2024-01-01\n  \
                            orquesta purge --before 2024-06-30T12:00:00+02:00 --vacuum --url http://10.0.0.5:5000\n\n\
                            Purged task ids are no longer known: a file that uses them again is accepted and runs again.\n\
                            Exit status: 0 when the orchestrator purged (or counted), 1 otherwise, 2 for a bad --before."
    )]
    Purge(crate::cli::purge::PurgeArgs),
    /// Allocation queues: workers from a cluster manager (Slurm, or your
    /// own submit/status/cancel commands), through the running orchestrator.
    #[command(
        after_help = "Examples:\n  orquesta alloc add slurm --name cpu --max-jobs 4 --time-limit 2h --idle-timeout 5m\n  \
                            orquesta alloc list\n  orquesta alloc pause cpu\n  orquesta alloc remove cpu\n\n\
                            Exit status: 0 when the orchestrator accepted it, 1 otherwise, 2 for a bad --url."
    )]
    Alloc(crate::cli::alloc::AllocArgs),
    /// Results of the running orchestrator: `results export` writes one
    /// flat row per task as CSV, JSON lines or Parquet.
    #[command(subcommand)]
    Results(crate::cli::results::ResultsCommand),
    /// A study's report: one self-contained HTML page of plots (each
    /// observable against each swept parameter with error bars over
    /// replicas, a thermo series, execution time against N), from the
    /// running orchestrator.
    #[command(after_help = "Examples:\n  orquesta report --study rho-sweep\n  \
                            orquesta report --url http://10.0.0.5:5000 --study rho-sweep --task rho-sweep_007 -o rho.html\n\n\
                            Exit status: 0 when the page was written, 1 otherwise, 2 for a bad flag.")]
    Report(crate::cli::report::ReportArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  orquesta completions bash > ~/.local/share/bash-completion/completions/orquesta\n  \
                            orquesta completions zsh > \"${fpath[1]}/_orquesta\"\n  \
                            orquesta completions fish > ~/.config/fish/completions/orquesta.fish"
    )]
    Completions(crate::cli::completions::CompletionsArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load and validate .env and config_workers.json, print the effective
    /// settings, and check whether each worker answers (the seed's
    /// `python config_manager.py`).
    Check(OrchestratorArgs),
    /// Print docs/configuration.md: every setting with its default,
    /// rendered from the tables the processes read.
    #[command(after_help = "Example:\n  orquesta config docs > docs/configuration.md")]
    Docs,
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
    /// Issue 12's workloads on a local cluster of separate processes:
    /// tiny tasks (tasks/s), ~1.6 ms tasks (overhead per task) and a
    /// million-task file (ingest rate, memory, read latencies).
    #[command(
        after_help = "Examples:\n  orquesta bench cluster trivial --runs 5\n  orquesta bench cluster ms --workers 2 --slots 1\n  orquesta bench cluster ingest --tasks 1000000\n  orquesta bench cluster all --json"
    )]
    Cluster(bench::ClusterBenchArgs),
    /// Makespan of a mixed batch under each load-balancing strategy, in a
    /// simulation of workers of capacity 1, 2 and 4 calibrated by real runs.
    #[command(after_help = "Example:\n  orquesta bench makespan --tasks 200 --speeds 1.0,1.0,0.7")]
    Makespan(bench::MakespanArgs),
}

pub fn main() -> ExitCode {
    // .env first, so that flags > environment > .env
    let dotenv_problems = crate::util::settings::load_dotenv(std::path::Path::new(".env"));
    let cli = Cli::parse();
    for p in dotenv_problems {
        eprintln!("warning: {p}");
    }
    if let Err(e) = apply_token_flags(&cli) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let code = match cli.command {
        Command::Sim(args) => crate::cli::sim::run(&args),
        Command::Worker(args) => crate::cli::worker::run(&args),
        Command::Orchestrator(args) => crate::cli::orchestrator::run(&args),
        Command::Up(args) => crate::cli::up::run(&args),
        Command::Run(args) => crate::cli::run::run(&args),
        Command::Config(ConfigCommand::Check(args)) => crate::cli::config_check::run(&args),
        Command::Config(ConfigCommand::Docs) => crate::cli::config_docs::run(),
        Command::Bench(BenchCommand::Sim(args)) => bench::sim(&args),
        Command::Bench(BenchCommand::Worker(args)) => bench::worker(&args),
        Command::Bench(BenchCommand::E2e(args)) => bench::e2e(&args),
        Command::Bench(BenchCommand::Cluster(args)) => bench::cluster(&args),
        Command::Bench(BenchCommand::Makespan(args)) => bench::makespan(&args),
        Command::Gen(args) => crate::cli::gen::run(&args),
        Command::Validate(args) => crate::cli::validate::run(&args),
        Command::Schema => crate::cli::schema::run(),
        Command::Submit(args) => crate::cli::submit::run(&args),
        Command::Status(args) => crate::cli::status::run(&args),
        Command::Ping(args) => crate::cli::ping::run(&args),
        Command::Workers(args) => crate::cli::workers::run(&args),
        Command::Drain(args) => crate::cli::workers::act(crate::cli::workers::Action::Drain, &args),
        Command::Resume(args) => crate::cli::workers::act(crate::cli::workers::Action::Resume, &args),
        Command::Purge(args) => crate::cli::purge::run(&args),
        Command::Alloc(args) => crate::cli::alloc::run(&args),
        Command::Results(command) => crate::cli::results::run(&command),
        Command::Report(args) => crate::cli::report::run(&args),
        Command::Completions(args) => crate::cli::completions::run(&args),
    };
    // log lines still waiting for their writer thread
    crate::util::log_writer::flush_all();
    code
}

pub use crate::util::machine::available_threads;
