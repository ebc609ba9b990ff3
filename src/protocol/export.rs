//! `GET /results/export` (`orquesta results export`): one flat row per
//! task, its columns named here once, so that the orchestrator's CSV and
//! JSON-lines and the CLI's Parquet agree. A row is built from a stored
//! task (its body and, when it has one, its result record) by [`flat_row`];
//! the encoders write numbers with every bit kept (Rust's shortest
//! round-trip form), so a value read back equals `GET /tasks/{id}`'s.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{ParamKind, TaskId, TaskStatus, WorkerId, TASK_PARAMETERS};

/// The formats of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated, a header line first (RFC 4180 quoting).
    Csv,
    /// One JSON object per line, keys in column order, null when absent.
    Jsonl,
    /// Apache Parquet: written by the CLI from the JSON lines (the
    /// orchestrator serves csv and jsonl only).
    Parquet,
}

impl ExportFormat {
    pub const NAMES: &'static str = "csv, jsonl or parquet";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" => Some(Self::Jsonl),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    /// A whole number from 0 to u64::MAX.
    Whole,
    /// A float, every bit kept.
    Real,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    TaskId,
    Study,
    File,
    Status,
    Algorithm,
    /// An effective parameter (the task's value, else its default).
    Parameter,
    /// `result.metrics.<name>`.
    Metric,
    /// `result.metrics.averages.<observable>.<mean|sem>`.
    Average(&'static str, &'static str),
    WorkerId,
    Kernel,
    ExecutionTime,
    CompletedAt,
}

/// One column of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
    source: Source,
}

/// The scalar observables of `result.metrics` that get a column, in this
/// order (DESIGN.md "The simulation", "Output"). `memory_used` is left out:
/// it is `memory_bytes` as text. Absent from a result (not measured, or
/// unstable and not finite): an empty cell. A metric added to the
/// simulation is a line here (a unit test fails until it is).
pub const METRIC_COLUMNS: &[(&str, ColumnKind)] = &[
    ("particles_processed", ColumnKind::Whole),
    ("steps_completed", ColumnKind::Whole),
    ("memory_bytes", ColumnKind::Whole),
    ("potential_energy_initial", ColumnKind::Real),
    ("kinetic_energy_initial", ColumnKind::Real),
    ("total_energy_initial", ColumnKind::Real),
    ("potential_energy_final", ColumnKind::Real),
    ("kinetic_energy_final", ColumnKind::Real),
    ("total_energy_final", ColumnKind::Real),
    ("temperature_final", ColumnKind::Real),
    ("pressure_initial", ColumnKind::Real),
    ("pressure_final", ColumnKind::Real),
    ("max_energy_drift", ColumnKind::Real),
    ("position_checksum", ColumnKind::Real),
    ("particle_steps_per_second", ColumnKind::Real),
    ("threads", ColumnKind::Whole),
];

/// The second-half averages of a run with `thermo_every`
/// (`result.metrics.averages`), flattened: the column's name, then the
/// observable and the field (`mean` or `sem`) it reads. `<observable>_mean`
/// and `<observable>_sem` for each observable the simulation averages, in
/// its order; energies per particle. A run without `thermo_every` (or whose
/// second half holds no row) has none: empty cells; a `sem` is also empty
/// when a single row was averaged (no spread to measure).
pub const AVERAGE_COLUMNS: &[(&str, &str, &str)] = &[
    ("temperature_mean", "temperature", "mean"),
    ("temperature_sem", "temperature", "sem"),
    ("pressure_mean", "pressure", "mean"),
    ("pressure_sem", "pressure", "sem"),
    ("potential_energy_mean", "potential_energy", "mean"),
    ("potential_energy_sem", "potential_energy", "sem"),
    ("total_energy_mean", "total_energy", "mean"),
    ("total_energy_sem", "total_energy", "sem"),
];

/// Every column, in order: ids, study, file, status, algorithm, every
/// effective parameter, every metric, every average, then worker, kernel,
/// timings.
pub fn columns() -> Vec<Column> {
    let c = |name, kind, source| Column { name, kind, source };
    let mut out = vec![
        c("task_id", ColumnKind::Text, Source::TaskId),
        c("study", ColumnKind::Text, Source::Study),
        c("file", ColumnKind::Text, Source::File),
        c("status", ColumnKind::Text, Source::Status),
        c("algorithm", ColumnKind::Text, Source::Algorithm),
    ];
    out.extend(TASK_PARAMETERS.iter().map(|p| {
        let kind = match p.kind {
            ParamKind::Whole => ColumnKind::Whole,
            ParamKind::Real => ColumnKind::Real,
        };
        c(p.name, kind, Source::Parameter)
    }));
    out.extend(
        METRIC_COLUMNS
            .iter()
            .map(|(name, kind)| c(name, *kind, Source::Metric)),
    );
    out.extend(
        AVERAGE_COLUMNS
            .iter()
            .map(|(name, observable, field)| c(name, ColumnKind::Real, Source::Average(observable, field))),
    );
    out.extend([
        c("worker_id", ColumnKind::Text, Source::WorkerId),
        c("kernel", ColumnKind::Text, Source::Kernel),
        c("execution_time", ColumnKind::Real, Source::ExecutionTime),
        c("completed_at", ColumnKind::Text, Source::CompletedAt),
    ]);
    out
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    Whole(u64),
    Real(f64),
}

impl Cell {
    /// A JSON value as a cell of `kind` (a whole number written as an
    /// integral float, as the validator accepts, counts).
    pub fn of_json(v: Option<&Value>, kind: ColumnKind) -> Cell {
        let Some(v) = v else { return Cell::Empty };
        match (kind, v) {
            (_, Value::Null) => Cell::Empty,
            (ColumnKind::Text, Value::String(s)) => Cell::Text(s.clone()),
            (ColumnKind::Text, other) => Cell::Text(other.to_string()),
            (ColumnKind::Whole, Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Cell::Whole(u),
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => {
                    Cell::Whole(f as u64)
                }
                _ => Cell::Empty,
            },
            (ColumnKind::Real, Value::Number(n)) => n.as_f64().map_or(Cell::Empty, Cell::Real),
            _ => Cell::Empty,
        }
    }

    /// The cell as JSON (null when empty).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Empty => Value::Null,
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Whole(u) => Value::from(*u),
            Cell::Real(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        }
    }
}

/// A stored task as the export reads it.
#[derive(Debug, Clone)]
pub struct StoredTask {
    pub task_id: TaskId,
    pub status: TaskStatus,
    /// As stored: a kernel this build does not know (a database written
    /// by another version) is still exported.
    pub kernel: String,
    pub source: String,
    /// The task's body ([`crate::model::Task::to_json`]).
    pub body: Value,
    /// The result record, when it has one.
    pub result: Option<Value>,
    pub worker_id: Option<WorkerId>,
}

/// The row of one task, a cell per [`columns`] entry.
pub fn flat_row(columns: &[Column], task: &StoredTask) -> Vec<Cell> {
    let params = task.body.get("parameters");
    let result = task.result.as_ref();
    let metrics = result.and_then(|r| r.pointer("/result/metrics"));
    columns
        .iter()
        .map(|col| match col.source {
            Source::TaskId => Cell::Text(task.task_id.to_string()),
            Source::Study => Cell::of_json(task.body.get("study"), col.kind),
            Source::File => Cell::Text(task.source.clone()),
            Source::Status => Cell::Text(task.status.as_str().to_string()),
            Source::Algorithm => Cell::of_json(task.body.get("algorithm"), col.kind),
            Source::Parameter => {
                let given = params.and_then(|p| p.get(col.name)).filter(|v| !v.is_null());
                match given {
                    Some(v) => Cell::of_json(Some(v), col.kind),
                    None => crate::model::task_parameter(col.name)
                        .and_then(|p| p.default)
                        .map_or(Cell::Empty, Cell::Real),
                }
            }
            Source::Metric => Cell::of_json(metrics.and_then(|m| m.get(col.name)), col.kind),
            Source::Average(observable, field) => Cell::of_json(
                metrics
                    .and_then(|m| m.get("averages"))
                    .and_then(|a| a.get(observable))
                    .and_then(|o| o.get(field)),
                col.kind,
            ),
            Source::WorkerId => match (&task.worker_id, result.and_then(|r| r.get("worker_id"))) {
                (_, Some(Value::String(w))) => Cell::Text(w.clone()),
                (Some(w), _) => Cell::Text(w.to_string()),
                _ => Cell::Empty,
            },
            Source::Kernel => Cell::Text(task.kernel.clone()),
            Source::ExecutionTime => Cell::of_json(result.and_then(|r| r.get("execution_time")), col.kind),
            Source::CompletedAt => Cell::of_json(result.and_then(|r| r.get("completed_at")), col.kind),
        })
        .collect()
}

/// The CSV header line.
pub fn csv_header(columns: &[Column], out: &mut String) {
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(c.name);
    }
    out.push('\n');
}

/// One CSV line: text quoted when it holds a comma, a quote or a line
/// break; floats in the shortest form that reads back to the same bits.
pub fn csv_line(row: &[Cell], out: &mut String) {
    use std::fmt::Write;
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match cell {
            Cell::Empty => {}
            Cell::Text(s) if s.contains([',', '"', '\n', '\r']) => {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            }
            Cell::Text(s) => out.push_str(s),
            Cell::Whole(u) => {
                let _ = write!(out, "{u}");
            }
            Cell::Real(f) => {
                // `{:?}` is the shortest round-trip form and keeps `.0`
                let _ = write!(out, "{f:?}");
            }
        }
    }
    out.push('\n');
}

/// One JSON line: an object, keys in column order.
pub fn json_line(columns: &[Column], row: &[Cell], out: &mut String) {
    let object: serde_json::Map<String, Value> = columns
        .iter()
        .zip(row)
        .map(|(c, cell)| (c.name.to_string(), cell.to_json()))
        .collect();
    out.push_str(&Value::Object(object).to_string());
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> StoredTask {
        StoredTask {
            task_id: "t1".into(),
            status: crate::model::TaskStatus::Completed,
            kernel: "reference".into(),
            source: "my, file.json".into(),
            body: json!({"task_id": "t1", "algorithm": "python", "study": "s1",
                "parameters": {"num_particles": 1e2, "num_steps": 10, "seed": 18446744073709551615u64,
                               "density": 0.7}}),
            result: Some(json!({"execution_time": 0.25, "worker_id": "w1",
                "completed_at": "2026-01-01T00:00:00Z",
                "result": {"metrics": {"total_energy_final": -1.2345678901234567, "steps_completed": 10,
                                       "memory_used": "1.0 MB",
                                       "averages": {"pressure": {"mean": 0.75, "sem": 0.125},
                                                    "temperature": {"mean": 1.5}}}}})),
            worker_id: None,
        }
    }

    #[test]
    fn a_row_has_every_effective_parameter_and_metric_by_name() {
        let cols = columns();
        let row = flat_row(&cols, &stored());
        let cell = |name: &str| row[cols.iter().position(|c| c.name == name).unwrap()].clone();
        assert_eq!(cell("study"), Cell::Text("s1".into()));
        assert_eq!(cell("num_particles"), Cell::Whole(100));
        assert_eq!(cell("seed"), Cell::Whole(u64::MAX));
        assert_eq!(cell("density"), Cell::Real(0.7));
        assert_eq!(
            cell("temperature"),
            Cell::Real(crate::sim::system::DEFAULT_TEMPERATURE)
        );
        assert_eq!(cell("total_energy_final"), Cell::Real(-1.2345678901234567));
        assert_eq!(cell("pressure_final"), Cell::Empty);
        assert_eq!(cell("pressure_mean"), Cell::Real(0.75));
        assert_eq!(cell("pressure_sem"), Cell::Real(0.125));
        assert_eq!(cell("temperature_mean"), Cell::Real(1.5));
        assert_eq!(cell("temperature_sem"), Cell::Empty, "one row: no sem");
        assert_eq!(cell("total_energy_mean"), Cell::Empty);
        assert_eq!(cell("worker_id"), Cell::Text("w1".into()));
        assert_eq!(cell("execution_time"), Cell::Real(0.25));
        assert!(!cols.iter().any(|c| c.name == "memory_used"));
        let mut names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cols.len(), "column names are unique");
    }

    #[test]
    fn csv_and_json_lines_keep_every_bit() {
        let cols = columns();
        let row = flat_row(&cols, &stored());
        let mut csv = String::new();
        csv_line(&row, &mut csv);
        assert!(
            csv.starts_with("t1,s1,\"my, file.json\",completed,python,100,10,18446744073709551615,0.7,1.0,")
        );
        assert!(csv.contains(",-1.2345678901234567,"), "{csv}");
        let mut jl = String::new();
        json_line(&cols, &row, &mut jl);
        let back: Value = serde_json::from_str(&jl).unwrap();
        assert_eq!(back["total_energy_final"].as_f64(), Some(-1.2345678901234567));
        assert_eq!(back["seed"].as_u64(), Some(u64::MAX));
        assert_eq!(back["pressure_final"], Value::Null);
        for f in [0.1 + 0.2, 1e-300, 5e-324, 123_456_789.123_456_79, 1e21] {
            let mut s = String::new();
            csv_line(&[Cell::Real(f)], &mut s);
            assert_eq!(s.trim().parse::<f64>().unwrap().to_bits(), f.to_bits(), "{s}");
        }
    }

    #[test]
    fn every_scalar_metric_a_run_reports_has_a_column() {
        let params = crate::sim::SimParams {
            num_particles: 16,
            num_steps: 2,
            seed: 1,
            density: None,
            temperature: None,
            dt: None,
            cutoff: None,
            thermo_every: Some(1),
        };
        let options = crate::sim::RunOptions::default();
        let report =
            crate::sim::simulate("reference", &params, &options, &crate::sim::Control::new()).unwrap();
        let metrics = serde_json::to_value(&report.metrics).unwrap();
        for (observable, fields) in metrics["averages"].as_object().unwrap() {
            for field in fields.as_object().unwrap().keys() {
                assert!(
                    AVERAGE_COLUMNS
                        .iter()
                        .any(|(_, o, f)| o == observable && f == field),
                    "result.metrics.averages.{observable}.{field} has no export column: add it to AVERAGE_COLUMNS"
                );
            }
        }
        for (name, v) in metrics.as_object().unwrap() {
            if v.is_number() {
                assert!(
                    METRIC_COLUMNS.iter().any(|(n, _)| n == name),
                    "result.metrics.{name} has no export column: add it to METRIC_COLUMNS"
                );
            }
        }
    }
}
