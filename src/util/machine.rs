//! What this process uses of the machine: cores and memory.

/// Cores this process may use.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The machine's physical memory in bytes, if the system says.
pub fn total_memory_bytes() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page <= 0 {
        return None;
    }
    (pages as u64).checked_mul(page as u64)
}

/// Resident memory now, in bytes (Linux: /proc/self/statm; elsewhere the
/// peak is the best available figure).
pub fn resident_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    {
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
            if let Some(pages) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
            {
                // SAFETY: sysconf has no preconditions.
                let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
                return pages * page.max(0) as u64;
            }
        }
    }
    peak_resident_bytes()
}

/// Peak resident memory since the process started, in bytes.
pub fn peak_resident_bytes() -> u64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let max = usage.ru_maxrss.max(0) as u64;
    // Linux reports kilobytes, macOS bytes
    if cfg!(target_os = "macos") {
        max
    } else {
        max * 1024
    }
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
