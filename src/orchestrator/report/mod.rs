//! A study's report (`GET /studies/{name}/report`, `orquesta report`):
//! [`StudyAccumulator`] folds the study's completed tasks, read a page at
//! a time like the export (the same [`flat_row`] columns, so a plotted
//! point is the mean of export cells), into one running mean and variance
//! per grid point and observable (Welford's update: memory grows with the
//! number of grid points, never with the number of tasks);
//! [`StudyAccumulator::finish`] turns them into the plotted lines
//! ([`StudyReport`]), and [`page`] draws them into one self-contained HTML
//! page.

pub mod page;
mod plots;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::{WorkerId, TASK_PARAMETERS};
use crate::protocol::export::{columns, flat_row, Cell, Column, StoredTask};
use crate::protocol::studies::{
    ObservablePlot, PlotLine, PlotPoint, ScalingLine, StudyReport, ThermoPoint, ThermoSeries,
};

/// The export columns plotted against each swept parameter, with the axis
/// label (LJ reduced units; energies per particle). A `_mean` column is
/// the second-half average of a run with `thermo_every`: plotted only when
/// some task has it.
pub const OBSERVABLES: &[(&str, &str)] = &[
    ("pressure_final", "final pressure P (ε/σ²)"),
    ("temperature_final", "final temperature T (ε/k_B)"),
    ("total_energy_final", "final total energy E/N (ε)"),
    ("potential_energy_final", "final potential energy U/N (ε)"),
    ("max_energy_drift", "energy drift max |E(t) − E(0)|/N (ε)"),
    ("pressure_mean", "mean pressure, 2nd half ⟨P⟩ (ε/σ²)"),
    ("temperature_mean", "mean temperature, 2nd half ⟨T⟩ (ε/k_B)"),
    ("total_energy_mean", "mean total energy, 2nd half ⟨E⟩/N (ε)"),
];

/// A parameter's axis label.
pub fn parameter_label(name: &str) -> String {
    match name {
        "num_particles" => "particles N".into(),
        "num_steps" => "steps".into(),
        "density" => "density ρ (σ⁻²)".into(),
        "temperature" => "initial temperature T₀ (ε/k_B)".into(),
        "dt" => "time step dt (τ)".into(),
        "cutoff" => "cut-off r_c (σ)".into(),
        "thermo_every" => "thermo_every (steps)".into(),
        other => other.into(),
    }
}

/// A running mean and sum of squared deviations (Welford).
#[derive(Debug, Clone, Copy, Default)]
struct Running {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Running {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    fn point(&self, x: f64) -> PlotPoint {
        let n = self.n as f64;
        PlotPoint {
            x,
            mean: self.mean,
            sem: (self.n >= 2).then(|| (self.m2 / (n - 1.0)).sqrt() / n.sqrt()),
            n: self.n,
        }
    }
}

/// The parameters a grid point is made of: every task parameter but the
/// seed (which only tells replicas apart).
fn grid_parameters() -> Vec<&'static str> {
    TASK_PARAMETERS
        .iter()
        .map(|p| p.name)
        .filter(|n| *n != "seed")
        .collect()
}

/// A cell as a number, if it is one.
fn number(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Whole(u) => Some(*u as f64),
        Cell::Real(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

/// A grid point's key: each grid parameter's value (its bits; `None` when
/// the task has none, e.g. no `thermo_every`).
type GridKey = Vec<Option<u64>>;

/// Folds a study's completed tasks into what its report plots.
pub struct StudyAccumulator {
    study: String,
    columns: Vec<Column>,
    parameters: Vec<&'static str>,
    /// Where each grid parameter, each observable, `num_particles` and
    /// `execution_time` sit in a row.
    parameter_at: Vec<usize>,
    observable_at: Vec<usize>,
    particles_at: usize,
    time_at: usize,
    groups: BTreeMap<GridKey, Vec<Running>>,
    /// (kernel, worker, N) → execution time.
    scaling: BTreeMap<(String, String, u64), Running>,
    thermo: Option<ThermoSeries>,
    /// The task whose series is shown, when one was asked for.
    thermo_of: Option<String>,
    completed: u64,
}

impl StudyAccumulator {
    pub fn new(study: &str, thermo_of: Option<String>) -> Self {
        let columns = columns();
        let at = |name: &str| {
            columns
                .iter()
                .position(|c| c.name == name)
                .unwrap_or_else(|| panic!("the export has a column {name}"))
        };
        let parameters = grid_parameters();
        Self {
            study: study.to_string(),
            parameter_at: parameters.iter().map(|p| at(p)).collect(),
            observable_at: OBSERVABLES.iter().map(|(o, _)| at(o)).collect(),
            particles_at: at("num_particles"),
            time_at: at("execution_time"),
            parameters,
            columns,
            groups: BTreeMap::new(),
            scaling: BTreeMap::new(),
            thermo: None,
            thermo_of,
            completed: 0,
        }
    }

    /// Adds one completed task. A result reused from an equal run
    /// (`reused_from`) is that run again, bit for bit: counted as
    /// completed, but neither a replica more (it would shrink the error
    /// bars) nor a timing (it did not run).
    pub fn add(&mut self, task: &StoredTask) {
        self.completed += 1;
        if task
            .result
            .as_ref()
            .is_some_and(|r| r.get("reused_from").is_some())
        {
            return;
        }
        let row = flat_row(&self.columns, task);
        let key: GridKey = self
            .parameter_at
            .iter()
            .map(|&i| number(&row[i]).map(f64::to_bits))
            .collect();
        let group = self
            .groups
            .entry(key)
            .or_insert_with(|| vec![Running::default(); OBSERVABLES.len()]);
        for (running, &i) in group.iter_mut().zip(&self.observable_at) {
            if let Some(v) = number(&row[i]) {
                running.add(v);
            }
        }
        if let (Some(n), Some(t)) = (number(&row[self.particles_at]), number(&row[self.time_at])) {
            let text = |name: &str| match self.columns.iter().position(|c| c.name == name).map(|i| &row[i]) {
                Some(Cell::Text(s)) => s.clone(),
                _ => String::new(),
            };
            self.scaling
                .entry((text("kernel"), text("worker_id"), n as u64))
                .or_default()
                .add(t);
        }
        let wanted = match &self.thermo_of {
            Some(id) => id.as_str() == task.task_id.as_str(),
            None => self.thermo.is_none(),
        };
        if wanted {
            if let Some(rows) = thermo_rows(task.result.as_ref()) {
                self.thermo = Some(ThermoSeries {
                    task_id: task.task_id.clone(),
                    rows,
                });
            }
        }
    }

    /// The report of every task added; `tasks` counts the study's tasks of
    /// any status.
    pub fn finish(self, tasks: u64) -> StudyReport {
        // the values each grid parameter takes
        let values: Vec<BTreeSet<Option<u64>>> = (0..self.parameters.len())
            .map(|i| self.groups.keys().map(|k| k[i]).collect())
            .collect();
        let swept: Vec<usize> = (0..self.parameters.len())
            .filter(|&i| values[i].len() > 1)
            .collect();
        let value = |bits: Option<u64>| bits.map(f64::from_bits);
        let mut plots = Vec::new();
        for (o, (observable, _)) in OBSERVABLES.iter().enumerate() {
            if !self.groups.values().any(|g| g[o].n > 0) {
                continue;
            }
            for &x in &swept {
                // one line per value of the other swept parameters
                let mut lines: BTreeMap<Vec<Option<u64>>, Vec<PlotPoint>> = BTreeMap::new();
                for (key, group) in &self.groups {
                    let (Some(xv), true) = (value(key[x]), group[o].n > 0) else {
                        continue;
                    };
                    let others: Vec<Option<u64>> =
                        swept.iter().filter(|&&s| s != x).map(|&s| key[s]).collect();
                    lines.entry(others).or_default().push(group[o].point(xv));
                }
                let others: Vec<&str> = swept
                    .iter()
                    .filter(|&&s| s != x)
                    .map(|&s| self.parameters[s])
                    .collect();
                let mut drawn: Vec<(Vec<f64>, PlotLine)> = lines
                    .into_iter()
                    .map(|(fixed, mut points)| {
                        points.sort_by(|a, b| a.x.total_cmp(&b.x));
                        let fixed_values: Vec<f64> =
                            fixed.iter().map(|b| value(*b).unwrap_or(f64::NAN)).collect();
                        let named: BTreeMap<String, f64> = others
                            .iter()
                            .zip(&fixed)
                            .filter_map(|(n, b)| value(*b).map(|v| (n.to_string(), v)))
                            .collect();
                        let label = others
                            .iter()
                            .zip(&fixed)
                            .map(|(n, b)| match value(*b) {
                                Some(v) => format!("{n}={v}"),
                                None => format!("{n}=none"),
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        let label = if label.is_empty() {
                            "all runs".into()
                        } else {
                            label
                        };
                        (
                            fixed_values,
                            PlotLine {
                                label,
                                fixed: named,
                                points,
                            },
                        )
                    })
                    .collect();
                drawn.sort_by(|a, b| {
                    a.0.iter()
                        .zip(&b.0)
                        .map(|(x, y)| x.total_cmp(y))
                        .find(|o| o.is_ne())
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                plots.push(ObservablePlot {
                    observable: observable.to_string(),
                    parameter: self.parameters[x].to_string(),
                    lines: drawn.into_iter().map(|(_, l)| l).collect(),
                });
            }
        }
        let mut scaling: BTreeMap<(String, String), Vec<PlotPoint>> = BTreeMap::new();
        for ((kernel, worker, n), running) in &self.scaling {
            scaling
                .entry((kernel.clone(), worker.clone()))
                .or_default()
                .push(running.point(*n as f64));
        }
        StudyReport {
            study: self.study,
            completed: self.completed,
            tasks,
            swept: swept.iter().map(|&i| self.parameters[i].to_string()).collect(),
            plots,
            thermo: self.thermo,
            scaling: scaling
                .into_iter()
                .map(|((kernel, worker_id), points)| ScalingLine {
                    kernel,
                    worker_id: WorkerId::new(&worker_id),
                    points,
                })
                .collect(),
        }
    }
}

/// `result.metrics.thermo` of a result record, if it has one.
fn thermo_rows(result: Option<&Value>) -> Option<Vec<ThermoPoint>> {
    let rows = result?.pointer("/result/metrics/thermo")?.as_array()?;
    rows.iter()
        .map(|r| serde_json::from_value::<ThermoPoint>(r.clone()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: &str, density: f64, temperature: f64, pressure: f64, worker: &str) -> StoredTask {
        StoredTask {
            task_id: id.into(),
            status: crate::model::TaskStatus::Completed,
            kernel: "optimized".into(),
            source: "s.json".into(),
            body: json!({"task_id": id, "algorithm": "optimized", "study": "s",
                "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1,
                               "density": density, "temperature": temperature}}),
            result: Some(json!({"execution_time": 0.5, "worker_id": worker,
                "result": {"metrics": {"pressure_final": pressure,
                    "thermo": [{"step": 0, "temperature": 1.0, "potential_energy": -2.0,
                                "kinetic_energy": 1.0, "total_energy": -1.0, "pressure": 0.5}]}}})),
            worker_id: Some(worker.into()),
        }
    }

    #[test]
    fn points_are_means_and_standard_errors_over_replicas() {
        let mut acc = StudyAccumulator::new("s", None);
        for (i, (rho, t, p)) in [
            (0.5, 1.0, 1.0),
            (0.5, 1.0, 2.0),
            (0.5, 1.0, 3.0),
            (0.6, 1.0, 4.0),
            (0.5, 2.0, 5.0),
            (0.6, 2.0, 6.0),
        ]
        .into_iter()
        .enumerate()
        {
            acc.add(&task(&format!("t{i}"), rho, t, p, "w1"));
        }
        let report = acc.finish(7);
        assert_eq!(report.swept, ["density", "temperature"]);
        assert_eq!((report.completed, report.tasks), (6, 7));
        let plot = report
            .plots
            .iter()
            .find(|p| p.observable == "pressure_final" && p.parameter == "density")
            .unwrap();
        assert_eq!(plot.lines.len(), 2, "one line per temperature");
        assert_eq!(plot.lines[0].label, "temperature=1");
        let first = &plot.lines[0].points[0];
        assert_eq!((first.x, first.mean, first.n), (0.5, 2.0, 3));
        // sd = 1, sem = 1/√3
        assert!((first.sem.unwrap() - 1.0 / 3f64.sqrt()).abs() < 1e-15);
        assert_eq!(plot.lines[0].points[1].sem, None, "one run: no error bar");
        assert!(report.plots.iter().all(|p| p.observable != "temperature_mean"));
        assert_eq!(report.thermo.as_ref().unwrap().task_id, "t0");
        assert_eq!(report.scaling.len(), 1);
        assert_eq!(report.scaling[0].points[0].n, 6);
    }

    #[test]
    fn a_reused_result_is_neither_a_replica_nor_a_timing() {
        let mut acc = StudyAccumulator::new("s", None);
        acc.add(&task("t0", 0.5, 1.0, 1.0, "w1"));
        acc.add(&task("t1", 0.5, 1.0, 3.0, "w1"));
        let mut again = task("t2", 0.5, 1.0, 3.0, "w1");
        if let Some(Value::Object(r)) = &mut again.result {
            r.insert("reused_from".into(), json!("t1"));
        }
        acc.add(&again);
        let pressure = OBSERVABLES
            .iter()
            .position(|(o, _)| *o == "pressure_final")
            .unwrap();
        let group = acc.groups.values().next().unwrap();
        assert_eq!(
            (group[pressure].mean, group[pressure].n),
            (2.0, 2),
            "t2 is t1 again"
        );
        let report = acc.finish(3);
        assert_eq!(report.completed, 3);
        assert_eq!(report.scaling[0].points[0].n, 2);
    }

    #[test]
    fn the_series_shown_is_the_one_asked_for() {
        let mut acc = StudyAccumulator::new("s", Some("t1".into()));
        acc.add(&task("t0", 0.5, 1.0, 1.0, "w1"));
        acc.add(&task("t1", 0.5, 1.0, 1.0, "w2"));
        let report = acc.finish(2);
        assert_eq!(report.thermo.unwrap().task_id, "t1");
        assert!(report.swept.is_empty());
        assert!(report.plots.is_empty());
        assert_eq!(report.scaling.len(), 2, "one line per worker");
    }
}
