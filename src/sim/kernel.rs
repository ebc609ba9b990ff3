//! The kernel trait, the per-run context kernels report to, and the one
//! registry of kernels and aliases.
//!
//! Adding a kernel: write a file with a type implementing [`Kernel`] and add
//! one line to [`KERNELS`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::checkpoint::{Checkpoint, KernelState};
use super::system::{Physics, State};
use super::{optimized, reference};

/// A way of integrating the system. Kernels own their step loop (so that a
/// multi-threaded kernel can keep its threads for the whole run) and report
/// the energies of every step to the [`Run`].
pub trait Kernel: Send + Sync {
    /// The name tasks use, e.g. `optimized`.
    fn name(&self) -> &'static str;
    /// One line for `--help` and `/status`.
    fn summary(&self) -> &'static str;
    /// What a run would cost, checked against the limits before it starts.
    fn estimate(&self, physics: &Physics, num_steps: u64) -> Estimate;
    /// What a checkpoint names this kernel's build by: a checkpoint is
    /// resumed only by the same build, since a change to the kernel's sums
    /// would change the bits of what follows. Bump it with any such change.
    /// A stored result is reused for a new task only under the same build
    /// too ([`build_stamp`], docs/studies.md "Never the same run twice").
    fn build(&self) -> &'static str;
    /// Integrates `state` for `run.steps()` steps (fewer if the run says
    /// stop) and returns the final state in original particle order.
    ///
    /// Must call [`Run::record`] once with the step-0 energies and virial
    /// and then once after every completed step; after each, when
    /// [`Run::checkpoint_due`] says so, hands its state to
    /// [`Run::save_checkpoint`]. A run that [`Run::take_resume`] gives a
    /// state continues from it instead, without recording its step again.
    fn run(&self, state: State, run: &mut Run<'_>) -> State;
}

/// The cost of a run as a kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Pair distance evaluations over the whole run.
    pub pair_evaluations: f64,
    /// Peak bytes of simulation state.
    pub memory_bytes: f64,
}

/// Every kernel, in the order they are listed to users.
pub static KERNELS: &[&dyn Kernel] = &[&reference::Reference, &optimized::Optimized];

/// The seed's algorithm names, kept so that its task files run unchanged.
pub static ALIASES: &[(&str, &str)] = &[("python", "reference"), ("cython", "optimized")];

/// Finds a kernel by name or alias.
pub fn lookup(name: &str) -> Option<&'static dyn Kernel> {
    let resolved = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, target)| target);
    KERNELS.iter().copied().find(|k| k.name() == resolved)
}

/// The version of a kernel's physics as checkpoints and reuse compare it:
/// the crate's version and the kernel's own [`Kernel::build`]. A new
/// release may add fields to a result, so a result is reused, and a
/// checkpoint resumed, only by the release that made it.
pub fn build_stamp(kernel: &dyn Kernel) -> String {
    format!("{}+{}", env!("CARGO_PKG_VERSION"), kernel.build())
}

/// Names reserved for the fault-test kernels a worker runs only with
/// `ORQUESTA_TEST_KERNELS=1` (they live in `model`, not here: they are not
/// simulations, but their names travel like kernel names).
pub const TEST_KERNEL_NAMES: [&str; 3] = ["__sleep", "__panic", "__abort"];

/// The kernel name behind an algorithm name or alias (`python` →
/// `reference`); test kernels resolve to their own name. What the
/// orchestrator matches tasks and workers on.
pub fn resolve_kernel(name: &str) -> Option<KernelName> {
    if let Some(t) = TEST_KERNEL_NAMES.iter().find(|t| **t == name) {
        return Some(KernelName(t));
    }
    lookup(name).map(|k| KernelName(k.name()))
}

/// A kernel's own name (`reference`, `optimized`, or a test kernel's),
/// never an alias: only [`resolve_kernel`] makes one, so holding one means
/// the registry knows it. Copied freely, compared by value, a plain string
/// on the wire and in the database.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelName(&'static str);

/// Shown as the name it is (`"reference"`), as when it was a string.
impl std::fmt::Debug for KernelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl KernelName {
    /// The kernel behind an algorithm name or alias, if there is one.
    pub fn resolve(name: &str) -> Option<Self> {
        resolve_kernel(name)
    }

    /// A registered kernel's name.
    pub fn of(kernel: &'static dyn Kernel) -> Self {
        KernelName(kernel.name())
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for KernelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<str> for KernelName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for KernelName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::borrow::Borrow<str> for KernelName {
    fn borrow(&self) -> &str {
        self.0
    }
}

impl serde::Serialize for KernelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KernelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        resolve_kernel(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a kernel name, found {name:?}")))
    }
}

/// Every name a task may use: kernel names, then aliases.
pub fn algorithm_names() -> Vec<&'static str> {
    KERNELS
        .iter()
        .map(|k| k.name())
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .collect()
}

/// Tests name kernels by literal; an unknown one fails the test at once.
#[cfg(test)]
impl From<&str> for KernelName {
    fn from(name: &str) -> Self {
        resolve_kernel(name).unwrap_or_else(|| panic!("test kernel name {name:?} is not registered"))
    }
}

/// Shared between a running simulation and whoever watches it: a cancel
/// flag and the count of completed steps, both readable from any thread.
#[derive(Debug, Default)]
pub struct Control {
    cancel: AtomicBool,
    steps_done: AtomicU64,
    /// Set by whoever wants a checkpoint; the kernel clears it when it
    /// saves one after its next step.
    checkpoint: AtomicBool,
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the simulation to stop; it does so within about one step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Steps completed so far.
    pub fn steps_done(&self) -> u64 {
        self.steps_done.load(Ordering::Relaxed)
    }

    /// Asks the simulation for a checkpoint after its next step (it saves
    /// one only if its run has somewhere to send it).
    pub fn request_checkpoint(&self) {
        self.checkpoint.store(true, Ordering::Relaxed);
    }

    /// True once, after [`Self::request_checkpoint`].
    fn take_checkpoint_request(&self) -> bool {
        self.checkpoint.load(Ordering::Relaxed) && self.checkpoint.swap(false, Ordering::Relaxed)
    }
}

/// Where a run sends its checkpoints.
pub type CheckpointSink<'a> = Box<dyn FnMut(Checkpoint) + Send + 'a>;

/// Why a run stopped before its last step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    Cancelled,
    /// After `step` steps the total energy per particle had moved from
    /// `initial` to `now` (possibly not a number), further than `bound`
    /// ([`drift_bound`]).
    Unstable {
        step: u64,
        initial: f64,
        now: f64,
        bound: f64,
    },
}

/// The least drift a run may show before it counts as unstable, in ε per
/// particle: far above what velocity Verlet gives at any sensible dt
/// (~1e-4 at the defaults), far below what a run that blows up reaches
/// (E/N of 1e10 and more within a few steps).
pub const DRIFT_FLOOR: f64 = 1.0;
/// ... or this fraction of the initial energy scale (|U0| + K0) / N, when
/// that is larger (hot or dense starts).
pub const DRIFT_FRACTION: f64 = 0.5;

/// The largest |E(t) − E(0)| / N a run may reach and still be trusted,
/// from its step-0 potential and kinetic energies per particle:
/// max([`DRIFT_FLOOR`], [`DRIFT_FRACTION`] · (|U0| + K0)). Velocity Verlet
/// keeps E close to E(0) whatever the physics; a drift beyond this means
/// the time step is too long for the forces (particles jumped into each
/// other), not a result.
pub fn drift_bound(potential0: f64, kinetic0: f64) -> f64 {
    DRIFT_FLOOR.max(DRIFT_FRACTION * (potential0.abs() + kinetic0.abs()))
}

/// What a kernel sees of one run: the physics, the step budget, the thread
/// budget, and the recorder of energies.
pub struct Run<'a> {
    physics: Physics,
    steps: u64,
    threads: usize,
    control: &'a Control,
    pub(crate) energies: EnergyLog,
    pub(crate) stop: Option<Stop>,
    pub(crate) memory_bytes: u64,
    /// Record a [`ThermoRow`] every this many steps (None: no series).
    thermo_every: Option<u64>,
    pub(crate) thermo: Vec<ThermoRow>,
    /// Who receives checkpoints (None: no checkpoint is ever made).
    sink: Option<CheckpointSink<'a>>,
    /// Save a checkpoint after this step too (besides requests).
    checkpoint_at: Option<u64>,
    /// The state to continue from, until the kernel takes it.
    resume: Option<KernelState>,
    /// The step the run started from (0 unless resumed).
    pub(crate) start_step: u64,
    /// Identifies checkpoints: kernel name and build, parameters hash.
    pub(crate) stamp: Option<super::checkpoint::Stamp>,
}

/// Energies seen so far: the initial and latest values (potential,
/// kinetic, virial) and the largest deviation of the total from its
/// initial value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EnergyLog {
    pub initial: Option<(f64, f64, f64)>,
    pub last: (f64, f64, f64),
    pub max_drift: f64,
    pub steps_recorded: u64,
    /// [`drift_bound`] of the initial energies, per particle.
    pub drift_bound: f64,
}

/// One row of `metrics.thermo`: the state after `step` steps, energies per
/// particle, LJ reduced units.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ThermoRow {
    pub step: u64,
    pub temperature: f64,
    pub potential_energy: f64,
    pub kinetic_energy: f64,
    pub total_energy: f64,
    pub pressure: f64,
}

impl<'a> Run<'a> {
    pub fn new(physics: Physics, steps: u64, threads: usize, control: &'a Control) -> Self {
        Self {
            physics,
            steps,
            threads: threads.max(1),
            control,
            energies: EnergyLog::default(),
            stop: None,
            memory_bytes: 0,
            thermo_every: None,
            thermo: Vec::new(),
            sink: None,
            checkpoint_at: None,
            resume: None,
            start_step: 0,
            stamp: None,
        }
    }

    /// Sends checkpoints stamped with `stamp` to `sink`: when the
    /// [`Control`] asks for one, and after step `at` if given.
    pub(crate) fn with_checkpoints(
        mut self,
        stamp: super::checkpoint::Stamp,
        sink: CheckpointSink<'a>,
        at: Option<u64>,
    ) -> Self {
        self.stamp = Some(stamp);
        self.sink = Some(sink);
        self.checkpoint_at = at;
        self
    }

    /// Continues from `checkpoint` (already checked against this run's
    /// kernel and parameters): its energies, series and step are this
    /// run's, its state the kernel's to take.
    pub(crate) fn resuming(mut self, checkpoint: Checkpoint) -> Self {
        self.energies = checkpoint.energies;
        self.thermo = checkpoint.thermo;
        self.start_step = checkpoint.step;
        self.control.steps_done.store(checkpoint.step, Ordering::Relaxed);
        self.resume = Some(checkpoint.state);
        self
    }

    /// The state to continue from, once (None: start at step 0).
    pub fn take_resume(&mut self) -> Option<KernelState> {
        self.resume.take()
    }

    /// Steps still to run: all of them, or those after the resumed step.
    pub fn steps_left(&self) -> u64 {
        self.steps.saturating_sub(self.energies.steps_recorded)
    }

    /// True when the kernel should hand its state to
    /// [`Self::save_checkpoint`] now (after a recorded step, before the
    /// next): asked for through the [`Control`] or at the chosen step, and
    /// only when there is a sink and steps are left.
    pub fn checkpoint_due(&self) -> bool {
        if self.sink.is_none() || self.steps_left() == 0 || self.stop.is_some() {
            return false;
        }
        let at = self.checkpoint_at == Some(self.energies.steps_recorded);
        // both evaluated: a request is consumed even at the chosen step
        self.control.take_checkpoint_request() | at
    }

    /// Saves a checkpoint of the run as it stands with the kernel's `state`.
    pub fn save_checkpoint(&mut self, state: KernelState) {
        let (Some(sink), Some(stamp)) = (self.sink.as_mut(), self.stamp.as_ref()) else {
            return;
        };
        sink(Checkpoint {
            stamp: stamp.clone(),
            step: self.energies.steps_recorded,
            energies: self.energies,
            thermo: self.thermo.clone(),
            state,
        });
    }

    /// Records a [`ThermoRow`] at every step that is a multiple of `every`
    /// (step 0 included); `None` records none.
    pub fn with_thermo(mut self, every: Option<u64>) -> Self {
        self.thermo_every = every.filter(|e| *e > 0);
        if let Some(e) = self.thermo_every {
            self.thermo
                .reserve((self.steps / e + 1).min(super::MAX_THERMO_ROWS) as usize);
        }
        self
    }

    pub fn physics(&self) -> &Physics {
        &self.physics
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Threads the kernel may use. Results must not depend on it.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The control block shared with whoever started the run.
    pub fn control(&self) -> &'a Control {
        self.control
    }

    /// True once the run has been cancelled; kernels with long steps poll
    /// this inside a step.
    pub fn cancelled(&self) -> bool {
        self.control.is_cancelled()
    }

    /// Bytes of simulation state the kernel holds, reported in the metrics.
    pub fn note_memory(&mut self, bytes: u64) {
        self.memory_bytes = self.memory_bytes.max(bytes);
    }

    /// Records the total potential and kinetic energy and the pair virial
    /// Σ rᵢⱼ·fᵢⱼ after a step (the first call is step 0). Returns false
    /// when the kernel must stop. A run whose energy becomes non-finite or
    /// drifts beyond [`drift_bound`] stops here as [`Stop::Unstable`]; the
    /// check is one comparison of a drift computed anyway, so every kernel
    /// makes it at every step.
    pub fn record(&mut self, potential: f64, kinetic: f64, virial: f64) -> bool {
        let log = &mut self.energies;
        let n = self.physics.num_particles as f64;
        let (p0, k0) = match log.initial {
            None => {
                log.initial = Some((potential, kinetic, virial));
                log.drift_bound = drift_bound(potential / n, kinetic / n);
                (potential, kinetic)
            }
            Some((p0, k0, _)) => {
                log.steps_recorded += 1;
                self.control
                    .steps_done
                    .store(log.steps_recorded, Ordering::Relaxed);
                let drift = ((potential + kinetic) - (p0 + k0)).abs() / n;
                if drift > log.max_drift {
                    log.max_drift = drift;
                }
                (p0, k0)
            }
        };
        log.last = (potential, kinetic, virial);
        if let Some(every) = self.thermo_every {
            let step = log.steps_recorded;
            if step.is_multiple_of(every) {
                let row = thermo_row(&self.physics, step, potential, kinetic, virial);
                // a row of an exploding run that is not finite is left out:
                // JSON has no NaN (the run stops here anyway)
                if let Some(row) = row {
                    self.thermo.push(row);
                }
            }
        }
        let log = &self.energies;
        let finite = potential.is_finite() && kinetic.is_finite();
        if !finite || log.max_drift > log.drift_bound {
            self.stop = Some(Stop::Unstable {
                step: log.steps_recorded,
                initial: (p0 + k0) / n,
                now: (potential + kinetic) / n,
                bound: log.drift_bound,
            });
            return false;
        }
        if self.control.is_cancelled() {
            self.stop = Some(Stop::Cancelled);
            return false;
        }
        true
    }

    /// Steps between two rows of the series, if one is recorded.
    pub fn thermo_every(&self) -> Option<u64> {
        self.thermo_every
    }

    /// The series recorded so far (`metrics.thermo`).
    pub fn thermo(&self) -> &[ThermoRow] {
        &self.thermo
    }

    /// Marks the run cancelled from inside a step (after [`Self::cancelled`]).
    pub fn stop_cancelled(&mut self) {
        self.stop = Some(Stop::Cancelled);
    }

    /// True when the run must stop before its next step.
    pub fn stopped(&self) -> bool {
        self.stop.is_some()
    }
}

/// The row of `metrics.thermo` for totals after `step` steps, if every
/// value is finite.
fn thermo_row(physics: &Physics, step: u64, potential: f64, kinetic: f64, virial: f64) -> Option<ThermoRow> {
    let n = physics.num_particles as f64;
    let temperature = super::system::temperature_of(kinetic, physics.num_particles);
    let row = ThermoRow {
        step,
        temperature,
        potential_energy: potential / n,
        kinetic_energy: kinetic / n,
        total_energy: (potential + kinetic) / n,
        pressure: super::system::pressure(physics, kinetic, virial),
    };
    let values = [
        row.temperature,
        row.potential_energy,
        row.kinetic_energy,
        row.total_energy,
        row.pressure,
    ];
    values.iter().all(|v| v.is_finite()).then_some(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_kernels() {
        assert_eq!(lookup("python").unwrap().name(), "reference");
        assert_eq!(lookup("cython").unwrap().name(), "optimized");
        assert_eq!(lookup("reference").unwrap().name(), "reference");
        assert!(lookup("fortran").is_none());
        assert!(lookup("").is_none());
    }

    #[test]
    fn every_alias_points_at_a_registered_kernel() {
        for (alias, target) in ALIASES {
            assert!(lookup(target).is_some(), "{alias} -> {target}");
            assert!(KERNELS.iter().all(|k| k.name() != *alias));
        }
    }
}
