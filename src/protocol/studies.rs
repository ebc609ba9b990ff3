//! `GET /studies` (every study and how far it got) and the data of
//! `GET /studies/{name}/report` (`orquesta report`): the points the page
//! plots, also embedded in it as JSON (`<script type="application/json"
//! id="report-data">`) so that a reader or a test can take the numbers
//! rather than the pictures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{TaskId, WorkerId};

/// `GET /studies`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StudyList {
    /// By name.
    pub studies: Vec<StudySummary>,
}

/// One study: the tasks whose `study` field names it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StudySummary {
    pub name: String,
    /// Every task of the study.
    pub tasks: u64,
    /// Tasks by status (`queued`, `running`, `completed`, `failed`,
    /// `cancelled`); a status no task has is left out.
    pub by_status: BTreeMap<String, u64>,
    /// The parameters that take more than one value among its tasks
    /// (effective values, defaults filled in; `seed` is never counted: it
    /// tells replicas apart).
    pub swept: Vec<String>,
    /// Where its report is: `/studies/{name}/report`.
    pub report: String,
}

/// One plotted point: the mean of `n` runs at `x`, and its standard error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlotPoint {
    pub x: f64,
    pub mean: f64,
    /// The sample standard deviation (n − 1) over √n; absent for one run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sem: Option<f64>,
    pub n: u64,
}

/// One line of a plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlotLine {
    /// The legend, e.g. `temperature=1.5, num_particles=256`.
    pub label: String,
    /// The values the other swept parameters hold on this line.
    pub fixed: BTreeMap<String, f64>,
    /// By x, ascending.
    pub points: Vec<PlotPoint>,
}

/// An observable (an export column) against a swept parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObservablePlot {
    /// The export column plotted, e.g. `pressure_final`.
    pub observable: String,
    /// The swept parameter on the x axis, e.g. `density`.
    pub parameter: String,
    pub lines: Vec<PlotLine>,
}

/// One row of a task's `metrics.thermo` (energies per particle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThermoPoint {
    pub step: u64,
    pub temperature: f64,
    pub potential_energy: f64,
    pub kinetic_energy: f64,
    pub total_energy: f64,
    pub pressure: f64,
}

/// The series of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ThermoSeries {
    pub task_id: TaskId,
    pub rows: Vec<ThermoPoint>,
}

/// Execution time against `num_particles` for one kernel on one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingLine {
    pub kernel: String,
    pub worker_id: WorkerId,
    /// x: num_particles; mean and sem: seconds.
    pub points: Vec<PlotPoint>,
}

/// Everything `GET /studies/{name}/report` draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StudyReport {
    pub study: String,
    /// Completed tasks: the only ones plotted.
    pub completed: u64,
    /// Every task of the study, whatever its status.
    pub tasks: u64,
    /// The parameters with more than one value among the completed tasks.
    pub swept: Vec<String>,
    /// Each observable against each swept parameter.
    pub plots: Vec<ObservablePlot>,
    /// The series of one task (the one asked for, else the first completed
    /// task that has one); absent when none ran with `thermo_every`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermo: Option<ThermoSeries>,
    pub scaling: Vec<ScalingLine>,
}
