//! Checkpoints of a running simulation: everything a kernel needs to carry
//! on after a step exactly as if it had never stopped (positions,
//! velocities, the kernel's own layout, the energy log, the series so far;
//! the velocities' generator is used only at step 0, so it has no state
//! left to keep).
//!
//! The form is binary, versioned and self-checking: a magic, the format
//! version, the stamp (kernel name, kernel build, a hash of the effective
//! parameters and seed), the run, and a SHA-256 of all that. A checkpoint
//! that is damaged, or made by another kernel, build or task, is refused
//! with the reason ([`CheckpointRefused`]); the run then starts at step 0.

use sha2::{Digest, Sha256};

use super::kernel::{CheckpointSink, EnergyLog, Kernel, Run, ThermoRow};
use super::EffectiveParameters;

/// The layout [`Checkpoint::encode`] writes; any change to it bumps this.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"ORQCKPT\0";
const DIGEST_LEN: usize = 32;

/// How a run takes part in checkpointing (this module).
#[derive(Default)]
pub struct Checkpointing<'a> {
    /// A checkpoint to continue from ([`Checkpoint::encode`]'s form); one
    /// that is damaged or not this run's is refused and the run starts at
    /// step 0 ([`super::SimReport::resume_refused`] says why).
    pub resume: Option<&'a [u8]>,
    /// Receives a checkpoint whenever the [`super::Control`] asks for one.
    pub sink: Option<CheckpointSink<'a>>,
    /// Also save one after this step.
    pub at_step: Option<u64>,
}

impl<'a> Checkpointing<'a> {
    /// `run` set up as this says for `kernel` and `params`: resuming the
    /// checkpoint given if it is this run's, sending checkpoints to the
    /// sink. Also answers the step resumed from, or why the checkpoint
    /// was refused.
    pub(crate) fn apply(
        self,
        mut run: Run<'a>,
        kernel: &dyn Kernel,
        params: &EffectiveParameters,
    ) -> (Run<'a>, Option<u64>, Option<CheckpointRefused>) {
        let stamp = Stamp::of(kernel, params);
        let resumed = self.resume.map(|bytes| {
            let saved = Checkpoint::decode(bytes)?;
            saved.check(&stamp, params)?;
            Ok::<_, CheckpointRefused>(saved)
        });
        let (mut from, mut refused) = (None, None);
        match resumed {
            Some(Ok(saved)) => {
                from = Some(saved.step);
                run = run.resuming(saved);
            }
            Some(Err(why)) => refused = Some(why),
            None => {}
        }
        if let Some(sink) = self.sink {
            run = run.with_checkpoints(stamp, sink, self.at_step);
        }
        (run, from, refused)
    }
}

/// What a checkpoint belongs to: it is resumed only by a run with the
/// same stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub kernel: String,
    /// The crate version and the kernel's own [`Kernel::build`].
    pub build: String,
    /// SHA-256 of every effective parameter, seed included ([`params_hash`]).
    pub params_hash: [u8; DIGEST_LEN],
}

impl Stamp {
    /// The stamp of a run of `kernel` with `params`.
    pub fn of(kernel: &dyn Kernel, params: &EffectiveParameters) -> Self {
        Self {
            kernel: kernel.name().to_string(),
            build: super::kernel::build_stamp(kernel),
            params_hash: params_hash(params),
        }
    }
}

/// SHA-256 over the bits of every effective parameter in a fixed order.
pub fn params_hash(p: &EffectiveParameters) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    for v in [p.num_particles, p.num_steps, p.seed] {
        h.update(v.to_le_bytes());
    }
    for v in [p.density, p.temperature, p.dt, p.cutoff] {
        h.update(v.to_bits().to_le_bytes());
    }
    match p.thermo_every {
        None => h.update([0u8]),
        Some(every) => {
            h.update([1u8]);
            h.update(every.to_le_bytes());
        }
    }
    h.finalize().into()
}

/// A kernel's state after a step, as it holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelState {
    /// Positions and velocities in original particle order (`reference`:
    /// its forces are a function of the positions, summed in a fixed order).
    Plain {
        box_len: f64,
        pos: Vec<[f64; 2]>,
        vel: Vec<[f64; 2]>,
    },
    /// `optimized`: its arrays in their cell-sorted order, positions as
    /// they are between list builds, the forces of the last step, the
    /// positions at the last build, and each slot's original index. The
    /// order and the build positions decide the order of every later force
    /// sum, so they are kept as they are.
    Sorted {
        box_len: f64,
        pos: Vec<[f64; 2]>,
        vel: Vec<[f64; 2]>,
        force: Vec<[f64; 2]>,
        built_at: Vec<[f64; 2]>,
        orig: Vec<u32>,
    },
}

impl KernelState {
    fn particles(&self) -> usize {
        match self {
            KernelState::Plain { pos, .. } | KernelState::Sorted { pos, .. } => pos.len(),
        }
    }
}

/// A run stopped after `step` steps, ready to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub stamp: Stamp,
    pub step: u64,
    pub(crate) energies: EnergyLog,
    pub thermo: Vec<ThermoRow>,
    pub state: KernelState,
}

/// Why a checkpoint is not resumed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointRefused {
    #[error("corrupted checkpoint: {0}")]
    Corrupted(String),
    #[error("checkpoint format version {found}, this build reads version {FORMAT_VERSION}")]
    Format { found: u32 },
    #[error("checkpoint of kernel `{found}`, this task runs `{expected}`")]
    Kernel { found: String, expected: String },
    #[error("checkpoint made by build {found} of kernel `{kernel}`, this worker runs build {expected}")]
    Build {
        kernel: String,
        found: String,
        expected: String,
    },
    #[error("checkpoint of other parameters or another seed than this task's")]
    Parameters,
    #[error("checkpoint of {found} particles at step {step}, this task has {particles} particles and {steps} steps")]
    Shape {
        found: usize,
        step: u64,
        particles: u64,
        steps: u64,
    },
}

impl Checkpoint {
    /// Refuses a checkpoint that another kernel, build or task made.
    pub fn check(&self, expected: &Stamp, params: &EffectiveParameters) -> Result<(), CheckpointRefused> {
        let found = &self.stamp;
        if found.kernel != expected.kernel {
            return Err(CheckpointRefused::Kernel {
                found: found.kernel.clone(),
                expected: expected.kernel.clone(),
            });
        }
        if found.build != expected.build {
            return Err(CheckpointRefused::Build {
                kernel: found.kernel.clone(),
                found: found.build.clone(),
                expected: expected.build.clone(),
            });
        }
        if found.params_hash != expected.params_hash {
            return Err(CheckpointRefused::Parameters);
        }
        let kind_fits = matches!(
            (&self.state, expected.kernel.as_str()),
            (KernelState::Sorted { .. }, "optimized") | (KernelState::Plain { .. }, "reference")
        );
        let logged = self.energies.steps_recorded == self.step && self.energies.initial.is_some();
        if self.state.particles() as u64 != params.num_particles
            || self.step > params.num_steps
            || !kind_fits
            || !logged
        {
            return Err(CheckpointRefused::Shape {
                found: self.state.particles(),
                step: self.step,
                particles: params.num_particles,
                steps: params.num_steps,
            });
        }
        Ok(())
    }

    /// The binary form ([`FORMAT_VERSION`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64 + self.state.particles() * 72));
        w.0.extend_from_slice(MAGIC);
        w.u32(FORMAT_VERSION);
        w.str(&self.stamp.kernel);
        w.str(&self.stamp.build);
        w.0.extend_from_slice(&self.stamp.params_hash);
        w.u64(self.step);
        let e = &self.energies;
        w.u8(e.initial.is_some() as u8);
        let (p0, k0, v0) = e.initial.unwrap_or_default();
        w.f64s(&[
            p0,
            k0,
            v0,
            e.last.0,
            e.last.1,
            e.last.2,
            e.max_drift,
            e.drift_bound,
        ]);
        w.u64(e.steps_recorded);
        w.u64(self.thermo.len() as u64);
        for r in &self.thermo {
            w.u64(r.step);
            w.f64s(&[
                r.temperature,
                r.potential_energy,
                r.kinetic_energy,
                r.total_energy,
                r.pressure,
            ]);
        }
        match &self.state {
            KernelState::Plain { box_len, pos, vel } => {
                w.u8(0);
                w.f64s(&[*box_len]);
                w.u64(pos.len() as u64);
                w.pairs(pos);
                w.pairs(vel);
            }
            KernelState::Sorted {
                box_len,
                pos,
                vel,
                force,
                built_at,
                orig,
            } => {
                w.u8(1);
                w.f64s(&[*box_len]);
                w.u64(pos.len() as u64);
                for a in [pos, vel, force, built_at] {
                    w.pairs(a);
                }
                for o in orig {
                    w.u32(*o);
                }
            }
        }
        let digest: [u8; DIGEST_LEN] = Sha256::digest(&w.0).into();
        w.0.extend_from_slice(&digest);
        w.0
    }

    /// Reads [`Self::encode`]'s form, refusing one that is damaged or of
    /// another format version (its stamp is checked by [`Self::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointRefused> {
        let corrupted = |what: &str| CheckpointRefused::Corrupted(what.to_string());
        if bytes.len() < MAGIC.len() + 4 + DIGEST_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupted("not a checkpoint (no ORQCKPT header)"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
        if Sha256::digest(body).as_slice() != digest {
            return Err(corrupted("its SHA-256 does not match its content"));
        }
        let mut r = Reader {
            bytes: body,
            at: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(CheckpointRefused::Format { found: version });
        }
        let kernel = r.str()?;
        let build = r.str()?;
        let params_hash = r.take(DIGEST_LEN)?.try_into().expect("took 32 bytes");
        let step = r.u64()?;
        let has_initial = r.u8()? == 1;
        let [p0, k0, v0, p1, k1, v1, max_drift, drift_bound] = r.f64s::<8>()?;
        let energies = EnergyLog {
            initial: has_initial.then_some((p0, k0, v0)),
            last: (p1, k1, v1),
            max_drift,
            steps_recorded: r.u64()?,
            drift_bound,
        };
        let rows = r.count(8 + 5 * 8)?;
        let mut thermo = Vec::with_capacity(rows);
        for _ in 0..rows {
            let step = r.u64()?;
            let [temperature, potential_energy, kinetic_energy, total_energy, pressure] = r.f64s::<5>()?;
            thermo.push(ThermoRow {
                step,
                temperature,
                potential_energy,
                kinetic_energy,
                total_energy,
                pressure,
            });
        }
        let kind = r.u8()?;
        let [box_len] = r.f64s::<1>()?;
        let state = match kind {
            0 => {
                let n = r.count(32)?;
                KernelState::Plain {
                    box_len,
                    pos: r.pairs(n)?,
                    vel: r.pairs(n)?,
                }
            }
            1 => {
                let n = r.count(4 * 16 + 4)?;
                KernelState::Sorted {
                    box_len,
                    pos: r.pairs(n)?,
                    vel: r.pairs(n)?,
                    force: r.pairs(n)?,
                    built_at: r.pairs(n)?,
                    orig: (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?,
                }
            }
            other => {
                return Err(CheckpointRefused::Corrupted(format!(
                    "unknown state kind {other}"
                )))
            }
        };
        if r.at != body.len() {
            return Err(corrupted("bytes left over after the state"));
        }
        if let KernelState::Sorted { orig, .. } = &state {
            let mut seen = vec![false; orig.len()];
            for &o in orig {
                match seen.get_mut(o as usize) {
                    Some(s) if !*s => *s = true,
                    _ => return Err(corrupted("its particle order is not a permutation")),
                }
            }
        }
        Ok(Self {
            stamp: Stamp {
                kernel,
                build,
                params_hash,
            },
            step,
            energies,
            thermo,
            state,
        })
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64s(&mut self, vs: &[f64]) {
        for v in vs {
            self.u64(v.to_bits());
        }
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn pairs(&mut self, a: &[[f64; 2]]) {
        for p in a {
            self.f64s(p);
        }
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, len: usize) -> Result<&'b [u8], CheckpointRefused> {
        let end = self.at.checked_add(len).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or_else(|| CheckpointRefused::Corrupted("it ends too early".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, CheckpointRefused> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CheckpointRefused> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, CheckpointRefused> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn f64s<const K: usize>(&mut self) -> Result<[f64; K], CheckpointRefused> {
        let mut out = [0.0; K];
        for v in &mut out {
            *v = f64::from_bits(self.u64()?);
        }
        Ok(out)
    }
    fn str(&mut self) -> Result<String, CheckpointRefused> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| CheckpointRefused::Corrupted("a name is not UTF-8".into()))
    }
    /// A count of items of `item_bytes` each, bounded by the bytes left.
    fn count(&mut self, item_bytes: usize) -> Result<usize, CheckpointRefused> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(item_bytes as u64) > left {
            return Err(CheckpointRefused::Corrupted(format!(
                "it counts {n} items, more than its bytes hold"
            )));
        }
        Ok(n as usize)
    }
    fn pairs(&mut self, n: usize) -> Result<Vec<[f64; 2]>, CheckpointRefused> {
        (0..n)
            .map(|_| {
                let [x, y] = self.f64s::<2>()?;
                Ok([x, y])
            })
            .collect()
    }
}
