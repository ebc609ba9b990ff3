//! Parameter studies: a task's optional `study` (the name that groups the
//! tasks of one study, kept with the task and written in its result) and
//! the one list of task parameters that `orquesta gen --grid/--set` and
//! `results export` name by their JSON names.

use crate::sim::system;

/// Longest study name accepted.
pub const MAX_STUDY_LEN: usize = 100;

/// What a study name may hold, for messages and the schema.
pub const STUDY_RULE: &str = "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit";

/// The pattern of a study name (for the task file's JSON schema).
pub const STUDY_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$";

/// Checks a study name: it goes into URLs (`?study=`), file names a user
/// picks for exports, and the columns of a table, so it stays short and
/// plain. `Err` says what was expected and what was found.
pub fn check_study(name: &str) -> Result<(), String> {
    let shown = super::validate::short(name);
    if name.is_empty() {
        return Err(format!("expected a study name of {STUDY_RULE}, found \"\""));
    }
    let len = name.chars().count();
    if len > MAX_STUDY_LEN {
        return Err(format!(
            "expected a study name of at most {MAX_STUDY_LEN} characters, found {len}: {shown}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "expected a study name of {STUDY_RULE}, found {bad:?} in {shown}"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "expected a study name starting with a letter or digit, found {shown}"
        ));
    }
    Ok(())
}

/// How a parameter's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A whole number ≥ 0 (a JSON integer).
    Whole,
    /// A number (a JSON float).
    Real,
}

/// One parameter of a simulation task (`parameters.<name>`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskParameter {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The value a task that leaves it out runs with (required ones: none).
    pub default: Option<f64>,
}

/// Every parameter a simulation task may give, in the order tables show
/// them. `gen --grid/--set` accept exactly these (and the task's own
/// `algorithm` and `priority`); `results export` has a column for each, its
/// effective value (defaults filled in). A new parameter is one line here.
pub const TASK_PARAMETERS: &[TaskParameter] = &[
    TaskParameter {
        name: "num_particles",
        kind: ParamKind::Whole,
        default: None,
    },
    TaskParameter {
        name: "num_steps",
        kind: ParamKind::Whole,
        default: None,
    },
    TaskParameter {
        name: "seed",
        kind: ParamKind::Whole,
        default: None,
    },
    TaskParameter {
        name: "density",
        kind: ParamKind::Real,
        default: Some(system::DEFAULT_DENSITY),
    },
    TaskParameter {
        name: "temperature",
        kind: ParamKind::Real,
        default: Some(system::DEFAULT_TEMPERATURE),
    },
    TaskParameter {
        name: "dt",
        kind: ParamKind::Real,
        default: Some(system::DEFAULT_DT),
    },
    TaskParameter {
        name: "cutoff",
        kind: ParamKind::Real,
        default: Some(system::DEFAULT_CUTOFF),
    },
    TaskParameter {
        name: "thermo_every",
        kind: ParamKind::Whole,
        default: None,
    },
];

/// The parameter of that name.
pub fn task_parameter(name: &str) -> Option<&'static TaskParameter> {
    TASK_PARAMETERS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_names_are_checked_with_a_clear_word() {
        for ok in ["lj-density", "T_sweep.2", "a", &"x".repeat(MAX_STUDY_LEN)] {
            assert_eq!(check_study(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_study("").unwrap_err(),
            format!("expected a study name of {STUDY_RULE}, found \"\"")
        );
        assert!(check_study("my study").unwrap_err().contains("found ' '"));
        assert!(check_study("a/b").unwrap_err().contains("found '/'"));
        assert!(check_study("-x")
            .unwrap_err()
            .contains("starting with a letter or digit"));
        assert!(check_study(&"x".repeat(101))
            .unwrap_err()
            .contains("at most 100 characters, found 101"));
    }

    #[test]
    fn every_parameter_the_validator_reads_is_listed() {
        let v = super::super::Validator::standard();
        let mut params = serde_json::Map::new();
        for p in TASK_PARAMETERS {
            let value = match p.kind {
                ParamKind::Whole => serde_json::json!(if p.name == "num_particles" { 100 } else { 3 }),
                ParamKind::Real => serde_json::json!(p.default.unwrap()),
            };
            params.insert(p.name.into(), value);
        }
        let task = serde_json::json!({"task_id": "t", "algorithm": "reference", "parameters": params});
        assert!(v.task(&task, "").is_ok());
    }
}
