//! What this process uses of the machine: cores and memory (the system
//! calls behind it are in [`crate::util::platform`]).

use crate::util::platform;

/// Cores this process may use.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The machine's physical memory in bytes, if the system says.
pub fn total_memory_bytes() -> Option<u64> {
    platform::total_memory_bytes()
}

/// Resident memory now, in bytes (Linux: /proc/self/statm; Windows: the
/// working set; elsewhere the peak is the best available figure).
pub fn resident_bytes() -> u64 {
    platform::resident_bytes().unwrap_or_else(peak_resident_bytes)
}

/// Peak resident memory since the process started, in bytes (0 if the
/// system does not say).
pub fn peak_resident_bytes() -> u64 {
    platform::peak_resident_bytes().unwrap_or(0)
}

/// Resident memory now and its peak (the peak is never below now, which
/// the kernel's page accounting does not promise on its own).
pub fn memory() -> (u64, u64) {
    let now = resident_bytes();
    (now, peak_resident_bytes().max(now))
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_figures_are_plausible() {
        let now = super::resident_bytes();
        let peak = super::peak_resident_bytes();
        assert!(now > 100_000 && peak >= 100_000, "{now} {peak}");
        let total = super::total_memory_bytes().expect("the machine's memory");
        assert!(total > now, "{total} {now}");
    }
}
