//! Which vector width the `optimized` pair loop runs at: the widest this
//! CPU has, unless `ORQUESTA_SIMD` forces one (for benchmarks and for
//! comparing widths). Every width gives the same bits (module docs of
//! `optimized`), so the choice is a matter of speed only and is never part
//! of a task or of a result.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that forces a width: `sse2` (`portable` off
/// x86-64), `avx2` or `auto` (the default: the widest the CPU has). Read
/// once, the first time a kernel asks.
pub const SIMD_ENV: &str = "ORQUESTA_SIMD";

/// How many pairs the pair loop computes per instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// Two pairs at a time in 128-bit registers: SSE2, the x86-64
    /// baseline; plain `[f64; 2]` lanes on other architectures.
    Base,
    /// Four pairs in 256-bit AVX2 registers.
    ///
    /// There is no AVX-512 width: measured on an AVX-512 Xeon it was
    /// slower than this one (bench/README.md "Kernel"), so it would only
    /// be more code to keep bit-identical.
    Avx2,
}

impl Width {
    /// Every width, narrowest first.
    pub const ALL: [Width; 2] = [Width::Base, Width::Avx2];

    /// The name `ORQUESTA_SIMD` takes.
    pub fn name(self) -> &'static str {
        match self {
            Width::Base if cfg!(target_arch = "x86_64") => "sse2",
            Width::Base => "portable",
            Width::Avx2 => "avx2",
        }
    }

    /// Whether this CPU runs the width.
    pub fn is_supported(self) -> bool {
        match self {
            Width::Base => true,
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest width this CPU runs.
    pub fn widest() -> Width {
        Width::ALL
            .into_iter()
            .rev()
            .find(|w| w.is_supported())
            .unwrap_or(Width::Base)
    }

    /// The widths this CPU runs, narrowest first.
    pub fn supported() -> Vec<Width> {
        Width::ALL.into_iter().filter(|w| w.is_supported()).collect()
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an `ORQUESTA_SIMD` value cannot be honoured; `runs`: the names
/// that would work here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WidthRefused {
    #[error("{SIMD_ENV}={value:?} is not a vector width: expected one of {runs}")]
    Unknown { value: String, runs: String },
    #[error("{SIMD_ENV}={value:?}: this CPU lacks {value}; it runs {runs}")]
    Lacking { value: String, runs: String },
}

/// The width an `ORQUESTA_SIMD` value asks for on this CPU: `None` or
/// `auto` is the widest supported; a width the CPU lacks, or an unknown
/// name, is an error that says what would work.
pub fn resolve(value: Option<&str>) -> Result<Width, WidthRefused> {
    let value = value.map(str::trim).unwrap_or("auto");
    if value.is_empty() || value.eq_ignore_ascii_case("auto") {
        return Ok(Width::widest());
    }
    let names = || {
        Width::supported()
            .iter()
            .map(|w| w.name())
            .chain(["auto"])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(width) = Width::ALL
        .into_iter()
        .find(|w| w.name().eq_ignore_ascii_case(value))
    else {
        return Err(WidthRefused::Unknown {
            value: value.into(),
            runs: names(),
        });
    };
    if !width.is_supported() {
        return Err(WidthRefused::Lacking {
            value: value.into(),
            runs: names(),
        });
    }
    Ok(width)
}

/// The width runs use, and why: `ORQUESTA_SIMD` resolved once. A value
/// that cannot be honoured falls back to the widest width (the bits are
/// the same) and is reported by [`choice`], which `orquesta bench sim`
/// prints.
pub fn chosen() -> Width {
    choice().0
}

/// [`chosen`], with the error of an `ORQUESTA_SIMD` that was not honoured.
pub fn choice() -> &'static (Width, Option<WidthRefused>) {
    static CHOICE: OnceLock<(Width, Option<WidthRefused>)> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let value = std::env::var(SIMD_ENV).ok();
        match resolve(value.as_deref()) {
            Ok(width) => (width, None),
            Err(e) => (Width::widest(), Some(e)),
        }
    })
}

#[cfg(test)]
thread_local! {
    /// A width forced for the runs of one test thread (the width tests
    /// compare every width in one process, where the environment variable
    /// is read only once).
    static FORCED: std::cell::Cell<Option<Width>> = const { std::cell::Cell::new(None) };
}

/// The width a run starting now on this thread uses.
pub(crate) fn for_this_run() -> Width {
    #[cfg(test)]
    if let Some(w) = FORCED.with(|f| f.get()) {
        return w;
    }
    chosen()
}

/// Runs `f` with the runs it starts on this thread at width `w`.
#[cfg(test)]
pub(crate) fn with_width<T>(w: Width, f: impl FnOnce() -> T) -> T {
    assert!(w.is_supported(), "{w} is not supported by this CPU");
    let before = FORCED.with(|c| c.replace(Some(w)));
    let out = f();
    FORCED.with(|c| c.set(before));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_auto_and_the_supported_names() {
        assert_eq!(resolve(None), Ok(Width::widest()));
        assert_eq!(resolve(Some(" AUTO ")), Ok(Width::widest()));
        assert_eq!(resolve(Some("")), Ok(Width::widest()));
        for w in Width::supported() {
            assert_eq!(resolve(Some(w.name())), Ok(w));
        }
        let e = resolve(Some("avx9")).unwrap_err().to_string();
        assert!(e.contains("ORQUESTA_SIMD") && e.contains("auto"), "{e}");
        for w in Width::ALL.into_iter().filter(|w| !w.is_supported()) {
            let e = resolve(Some(w.name())).unwrap_err().to_string();
            assert!(e.contains("lacks"), "{e}");
        }
    }
}
