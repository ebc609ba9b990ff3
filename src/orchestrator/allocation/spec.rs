//! An allocation queue's spec checked into a [`Plan`] (durations parsed,
//! algorithms resolved, the manager chosen), and the job script each
//! submission runs: one `orquesta worker --join` per slot, each draining
//! itself a margin before the time limit and when idle.

use std::path::Path;
use std::time::Duration;

use crate::model::KernelName;
use crate::orchestrator::allocation::manager::Manager;
use crate::protocol::allocations::{AllocationKind, AllocationSpec};
use crate::util::duration::parse_duration;

/// Limits that catch typos, not policy.
const MAX_JOBS: u32 = 10_000;
const MAX_WORKERS_PER_JOB: u32 = 1024;
const MAX_CAPACITY: u32 = 4096;
/// The shortest time limit: workers need a margin before it.
const SHORTEST_LIMIT: Duration = Duration::from_secs(60);

/// A checked spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub spec: AllocationSpec,
    pub time_limit: Duration,
    pub idle_timeout: Duration,
    /// What its workers run (`None`: every kernel).
    pub kernels: Option<Vec<KernelName>>,
    pub manager: Manager,
}

impl Plan {
    /// Slots one job brings.
    pub fn slots_per_job(&self) -> usize {
        (self.spec.workers_per_job * self.spec.capacity) as usize
    }

    /// How long before the time limit the workers drain: a tenth of it,
    /// between 15 s and 5 min (enough to finish or hand back what runs).
    pub fn margin(&self) -> Duration {
        (self.time_limit / 10).clamp(Duration::from_secs(15), Duration::from_secs(300))
    }
}

/// Checks a spec, listing every problem.
pub fn check_spec(spec: &AllocationSpec) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 64
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        problems.push(format!(
            "name: expected 1 to 64 letters, digits, '-' or '_', found {}",
            shown(&spec.name)
        ));
    }
    let mut bounded = |field: &str, v: u32, max: u32| {
        if v == 0 || v > max {
            problems.push(format!("{field}: expected 1 to {max}, found {v}"));
        }
    };
    bounded("max_jobs", spec.max_jobs, MAX_JOBS);
    bounded("workers_per_job", spec.workers_per_job, MAX_WORKERS_PER_JOB);
    bounded("capacity", spec.capacity, MAX_CAPACITY);
    let mut duration = |field: &str, raw: &str, least: Duration| match parse_duration(raw) {
        Ok(d) if d >= least => d,
        Ok(_) => {
            problems.push(format!(
                "{field}: expected at least {}s, found {raw:?}",
                least.as_secs_f64()
            ));
            least
        }
        Err(_) if raw.len() > 64 => {
            problems.push(format!(
                "{field}: expected a duration such as 90s, 15m or 2h, found {}",
                shown(raw)
            ));
            least
        }
        Err(e) => {
            problems.push(format!("{field}: {e}"));
            least
        }
    };
    let time_limit = duration("time_limit", &spec.time_limit, SHORTEST_LIMIT);
    let idle_timeout = duration("idle_timeout", &spec.idle_timeout, Duration::from_secs(1));
    let kernels = spec.algorithms.as_ref().map(|names| {
        if names.is_empty() {
            problems.push("algorithms: expected at least one algorithm, or none given for all".into());
        }
        names
            .iter()
            .filter_map(|a| {
                let k = KernelName::resolve(a);
                if k.is_none() {
                    problems.push(format!(
                        "algorithms: unknown algorithm {a:?}; expected one of {}",
                        crate::sim::algorithm_names().join(", ")
                    ));
                }
                k
            })
            .collect::<Vec<_>>()
    });
    match spec.kind {
        AllocationKind::Slurm => {
            for (field, v) in [
                ("submit", &spec.submit),
                ("status", &spec.status),
                ("cancel", &spec.cancel),
            ] {
                if v.is_some() {
                    problems.push(format!("{field}: only a command queue has one; a slurm queue runs sbatch, squeue and scancel"));
                }
            }
        }
        AllocationKind::Command => {
            if cfg!(not(unix)) {
                problems.push("kind: command queues need a Unix shell (sh)".into());
            }
            for (field, v) in [
                ("submit", &spec.submit),
                ("status", &spec.status),
                ("cancel", &spec.cancel),
            ] {
                if v.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    problems.push(format!("{field}: a command queue needs its {field} command"));
                }
            }
            if !spec.extra_args.is_empty() {
                problems.push("extra_args: only a slurm queue passes arguments to sbatch".into());
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        spec: spec.clone(),
        time_limit,
        idle_timeout,
        kernels,
        manager: Manager::of(spec, time_limit),
    })
}

/// A value as an error shows it: quoted, and cut with its length told
/// when long (a 10 KB name must not come back whole in the answer, the
/// log and every later listing).
fn shown(value: &str) -> String {
    const SHOWN: usize = 40;
    if value.chars().count() <= SHOWN {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(SHOWN).collect();
    format!("{head:?}… ({} bytes)", value.len())
}

/// Quotes a word for `sh` (single quotes, `'` closed and escaped).
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The worker ids of a job: `NAME-jSEQ-K`, so a joined worker tells its
/// job apart without asking the cluster manager.
pub fn worker_prefix(queue: &str, seq: u64) -> String {
    format!("{queue}-j{seq}-")
}

/// The script of one job: `workers_per_job` workers, each joining `join_url`.
/// The token is not in it: the job inherits it from the submitting
/// command's environment (`ORQUESTA_TOKEN`).
pub fn job_script(plan: &Plan, seq: u64, join_url: &str, binary: &Path, loopback: bool) -> String {
    let spec = &plan.spec;
    let drain_after = plan.time_limit.saturating_sub(plan.margin());
    // running tasks get half the margin to end; then they are cancelled
    // and go back to the queue
    let drain_timeout = plan.margin().as_secs_f64() / 2.0;
    let host = if loopback {
        "127.0.0.1".to_string()
    } else {
        "\"$(hostname)\"".to_string()
    };
    let algorithms = spec
        .algorithms
        .as_ref()
        .map(|a| format!(" --algorithms {}", sh_quote(&a.join(","))))
        .unwrap_or_default();
    format!(
        "#!/bin/sh\n\
         # Orquesta allocation queue {name}, job {seq}: one worker per slot, each\n\
         # joining the orchestrator and draining itself before the time limit or\n\
         # when idle; the job ends with its last worker. The token comes from\n\
         # the environment (ORQUESTA_TOKEN), never from this file.\n\
         i=1\n\
         while [ \"$i\" -le {k} ]; do\n  \
           {bin} worker --join {url} --worker-id \"{prefix}$i\" --host {host} --port 0 \\\n    \
           --capacity {c} --drain-after {drain}s --idle-exit {idle}s --drain-timeout {dt} \\\n    \
           --exit-with-parent \\\n    \
           --logs-dir logs{algorithms} &\n  \
           i=$((i + 1))\n\
         done\n\
         wait\n",
        name = spec.name,
        k = spec.workers_per_job,
        bin = sh_quote(&binary.display().to_string()),
        url = sh_quote(join_url),
        prefix = worker_prefix(&spec.name, seq),
        c = spec.capacity,
        drain = drain_after.as_secs().max(1),
        idle = plan.idle_timeout.as_secs_f64(),
        dt = drain_timeout,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> AllocationSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_slurm_queue_takes_defaults_and_a_bad_one_lists_every_problem() {
        let plan = check_spec(&spec(r#"{"name": "cpu", "kind": "slurm"}"#)).unwrap();
        assert_eq!(plan.time_limit, Duration::from_secs(3600));
        assert_eq!(plan.idle_timeout, Duration::from_secs(300));
        assert_eq!(plan.margin(), Duration::from_secs(300));
        let bad = spec(
            r#"{"name": "a b", "kind": "slurm", "max_jobs": 0, "time_limit": "10s",
                "idle_timeout": "soon", "algorithms": ["fortran"], "submit": "qsub"}"#,
        );
        let problems = check_spec(&bad).unwrap_err();
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("time_limit: expected at least 60s")));
        let cmd = check_spec(&spec(r#"{"name": "pbs", "kind": "command", "submit": "qsub"}"#)).unwrap_err();
        assert!(
            cmd.iter().any(|p| p.starts_with("status: a command queue needs")),
            "{cmd:?}"
        );
    }

    /// What an operator or an adversary might try: each is refused with
    /// the field named and what was expected, and nothing is echoed back
    /// whole when it is long.
    #[test]
    fn absurd_queues_are_refused_with_what_is_wrong() {
        let refused = |json: &str| check_spec(&spec(json)).unwrap_err();
        for (max_jobs, found) in [(0u64, "found 0"), (1_000_000_000, "found 1000000000")] {
            let p = refused(&format!(
                r#"{{"name": "q", "kind": "slurm", "max_jobs": {max_jobs}}}"#
            ));
            assert!(
                p.len() == 1 && p[0] == format!("max_jobs: expected 1 to 10000, {found}"),
                "{p:?}"
            );
        }
        for limit in ["0", "59s", "0.5m"] {
            let p = refused(&format!(
                r#"{{"name": "q", "kind": "slurm", "time_limit": "{limit}"}}"#
            ));
            assert_eq!(p, [format!("time_limit: expected at least 60s, found {limit:?}")]);
        }
        for bad in ["-5m", "soon", "1e400", "5 parsecs", "NaN", "inf"] {
            let p = refused(&format!(
                r#"{{"name": "q", "kind": "slurm", "idle_timeout": "{bad}"}}"#
            ));
            assert!(
                p.len() == 1 && p[0].starts_with("idle_timeout: expected a duration"),
                "{bad}: {p:?}"
            );
        }
        let p = refused(r#"{"name": "q", "kind": "slurm", "idle_timeout": "0"}"#);
        assert_eq!(p, ["idle_timeout: expected at least 1s, found \"0\""]);
        for name in ["a/b", "../etc", "", "a b", "ü"] {
            let p = refused(&format!(r#"{{"name": "{name}", "kind": "slurm"}}"#));
            assert!(
                p.len() == 1 && p[0].starts_with("name: expected 1 to 64 letters"),
                "{name}: {p:?}"
            );
        }
        let long = "x".repeat(10_000);
        let p = refused(&format!(
            r#"{{"name": "{long}", "kind": "slurm", "time_limit": "{long}"}}"#
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter().all(|m| m.len() < 200 && m.contains("… (10000 bytes)")),
            "{p:?}"
        );
        // a whole time limit just at the least leaves its workers the least margin
        let plan = check_spec(&spec(r#"{"name": "q", "kind": "slurm", "time_limit": "60s"}"#)).unwrap();
        assert_eq!(plan.margin(), Duration::from_secs(15));
        assert!(plan.time_limit > plan.margin());
    }

    #[test]
    fn the_script_starts_one_worker_per_slot_without_the_token() {
        let plan = check_spec(&spec(
            r#"{"name": "cpu", "kind": "slurm", "workers_per_job": 3, "capacity": 2,
                "time_limit": "10m", "idle_timeout": "30s", "algorithms": ["python"]}"#,
        ))
        .unwrap();
        let s = job_script(
            &plan,
            7,
            "http://127.0.0.1:5000",
            Path::new("/opt/it's/orquesta"),
            true,
        );
        assert!(s.contains("while [ \"$i\" -le 3 ]"), "{s}");
        assert!(
            s.contains("'/opt/it'\\''s/orquesta' worker --join 'http://127.0.0.1:5000'"),
            "{s}"
        );
        assert!(s.contains("--worker-id \"cpu-j7-$i\""), "{s}");
        // 10 min less a 60 s margin; half the margin to finish running tasks
        assert!(
            s.contains("--drain-after 540s --idle-exit 30s --drain-timeout 30"),
            "{s}"
        );
        assert!(s.contains("--algorithms 'python'"), "{s}");
        assert!(!s.contains("ORQUESTA_TOKEN="), "{s}");
    }
}
