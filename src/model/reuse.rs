//! When two tasks are the same run: the reuse key of a simulation task, its
//! kernel (aliases resolved), that kernel's build as checkpoints name it
//! ([`crate::sim::kernel::build_stamp`]: the release and the kernel's own
//! build, raised with any change to its sums) and every effective parameter
//! (defaults filled in, so a task that spells a default out and one that
//! leaves it out share a key; numbers compared by value: `100` and `1e2`
//! are one N), seed included. Runs are deterministic (DESIGN.md "The
//! simulation", "Determinism"): equal keys give equal physics bits, so a
//! completed task's stored result answers a new task of the same key
//! without running it. A task asking `"reuse": false` has no key.

use serde_json::Value;

use super::study::{ParamKind, TASK_PARAMETERS};
use crate::sim::kernel::{build_stamp, lookup};

/// The reuse key of a task of `kernel` whose body (the task's JSON) is
/// `body`; `None` when it must run: `"reuse": false`, a test kernel, or
/// parameters that are not a simulation's.
pub fn reuse_key(kernel: &str, body: &Value) -> Option<String> {
    if body.get("reuse") == Some(&Value::Bool(false)) {
        return None;
    }
    let kernel = lookup(kernel)?;
    let params = body.get("parameters")?.as_object()?;
    let mut key = format!("{}/{}", kernel.name(), build_stamp(kernel));
    for p in TASK_PARAMETERS {
        let given = params.get(p.name).filter(|v| !v.is_null());
        let part = match (p.kind, given, p.default) {
            (ParamKind::Whole, Some(v), _) => whole(v)?.to_string(),
            (ParamKind::Real, Some(v), _) => format!("{:016x}", v.as_f64()?.to_bits()),
            (ParamKind::Real, None, Some(d)) => format!("{:016x}", d.to_bits()),
            (ParamKind::Whole, None, Some(d)) => format!("{d}"),
            // an optional parameter without a default (thermo_every): absent
            (_, None, None) => "-".into(),
        };
        key.push(' ');
        key.push_str(&part);
    }
    Some(key)
}

/// A whole number written as an integer or an integral float.
fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_runs_share_a_key_and_others_do_not() {
        let base = json!({"parameters": {"num_particles": 100, "num_steps": 10, "seed": 7}});
        let spelled = json!({"parameters": {"num_particles": 1e2, "num_steps": 10, "seed": 7,
            "density": 0.5, "temperature": 1, "dt": 0.005, "cutoff": 2.5}, "description": "x"});
        let key = reuse_key("reference", &base).unwrap();
        assert_eq!(
            reuse_key("reference", &spelled).unwrap(),
            key,
            "defaults spelled out"
        );
        let stamp = build_stamp(lookup("reference").unwrap());
        assert!(key.starts_with(&format!("reference/{stamp} ")), "{key}");
        assert_eq!(reuse_key("python", &base).unwrap(), key, "an alias is its kernel");
        for other in [
            json!({"parameters": {"num_particles": 100, "num_steps": 10, "seed": 8}}),
            json!({"parameters": {"num_particles": 100, "num_steps": 11, "seed": 7}}),
            json!({"parameters": {"num_particles": 100, "num_steps": 10, "seed": 7, "density": 0.50000001}}),
            json!({"parameters": {"num_particles": 100, "num_steps": 10, "seed": 7, "thermo_every": 5}}),
        ] {
            assert_ne!(reuse_key("reference", &other).unwrap(), key, "{other}");
        }
        assert_ne!(reuse_key("optimized", &base).unwrap(), key, "another kernel");
        let mut opted_out = base.clone();
        opted_out["reuse"] = json!(false);
        assert_eq!(reuse_key("reference", &opted_out), None);
        assert_eq!(reuse_key("__sleep", &base), None, "test kernels always run");
    }
}
