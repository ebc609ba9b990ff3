//! What a benchmark reads about its own children from `/proc` (Linux): CPU
//! seconds per process and per thread, context switches and memory. Cheap
//! enough to sample before and after a run, so a bench can say whether the
//! orchestrator or the workers were the bottleneck. Elsewhere every reader
//! answers `None` and the benches print "-".

use std::path::Path;

/// CPU seconds (user + system) of one process or thread, and its name.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuLine {
    /// `comm`: the thread's name (at most 15 bytes, the kernel's cut).
    pub name: String,
    pub seconds: f64,
}

/// Parses one `/proc/…/stat` line: the name between the first `(` and the
/// last `)` (a name may itself hold spaces and parentheses), then
/// user + system time from fields 14 and 15, in clock ticks.
pub fn parse_stat(line: &str, ticks_per_second: f64) -> Option<CpuLine> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_string();
    // after ")": field 3 (state) is index 0, so field n is index n - 3
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some(CpuLine {
        name,
        seconds: (utime + stime) / ticks_per_second,
    })
}

fn ticks_per_second() -> f64 {
    crate::util::platform::clock_ticks_per_second().unwrap_or(100.0)
}

fn read_stat(path: &Path) -> Option<CpuLine> {
    parse_stat(&std::fs::read_to_string(path).ok()?, ticks_per_second())
}

/// CPU seconds `pid` has used so far, all its threads together.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    read_stat(Path::new(&format!("/proc/{pid}/stat"))).map(|l| l.seconds)
}

/// CPU seconds per thread of `pid`, summed over threads of the same name
/// (actix names its arbiters alike), most first.
pub fn threads(pid: u32) -> Vec<CpuLine> {
    let mut by_name: Vec<CpuLine> = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for entry in dir.flatten() {
        let Some(line) = read_stat(&entry.path().join("stat")) else {
            continue;
        };
        match by_name.iter_mut().find(|l| l.name == line.name) {
            Some(l) => l.seconds += line.seconds,
            None => by_name.push(line),
        }
    }
    by_name.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    by_name
}

/// The CPU each thread name used between two [`threads`] samples, most
/// first; names that used nothing are left out.
pub fn thread_delta(before: &[CpuLine], after: &[CpuLine]) -> Vec<CpuLine> {
    let mut delta: Vec<CpuLine> = after
        .iter()
        .map(|a| {
            let earlier = before
                .iter()
                .find(|b| b.name == a.name)
                .map_or(0.0, |b| b.seconds);
            CpuLine {
                name: a.name.clone(),
                seconds: a.seconds - earlier,
            }
        })
        .filter(|l| l.seconds > 0.0)
        .collect();
    delta.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    delta
}

/// A `Key:   123 kB`-style field of a `/proc/…/status` text, as a number
/// (the unit, if any, left to the caller).
pub fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Context switches (voluntary, involuntary) of every thread of `pid`
/// together: the kernel counts them per thread, and `/proc/PID/status`
/// shows only the main thread's.
pub fn context_switches(pid: u32) -> Option<(u64, u64)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let (mut voluntary, mut involuntary) = (0, 0);
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        voluntary += status_field(&text, "voluntary_ctxt_switches").unwrap_or(0);
        involuntary += status_field(&text, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Some((voluntary, involuntary))
}

/// Seconds every thread of `pid` together has spent waiting on a run
/// queue, ready but not running (`/proc/…/schedstat`, second field, in
/// ns). Large next to the CPU used means the process was starved by
/// others on the machine, not idle waiting for work.
pub fn runqueue_wait(pid: u32) -> Option<f64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        ns += parse_schedstat(&text).map_or(0, |(_, wait)| wait);
    }
    Some(ns as f64 / 1e9)
}

/// `/proc/…/schedstat`: nanoseconds on a CPU, nanoseconds waiting on a
/// run queue (then the number of time slices, unused here).
pub fn parse_schedstat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// Resident memory of `pid` now and its peak since it started, in bytes.
pub fn rss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let now = status_field(&text, "VmRSS")?;
    let peak = status_field(&text, "VmHWM")?;
    Some((now * 1024, peak * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_name_and_user_plus_system_time() {
        // a name with a space and a parenthesis, as a thread may carry
        let line = "4242 (actix (rt) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 0";
        let cpu = parse_stat(line, 100.0).expect("parses");
        assert_eq!(cpu.name, "actix (rt) x");
        assert!((cpu.seconds - 3.0).abs() < 1e-9, "{}", cpu.seconds);
    }

    #[test]
    fn a_short_or_broken_stat_line_is_none() {
        assert_eq!(parse_stat("12 (x) S 1 2 3", 100.0), None);
        assert_eq!(parse_stat("no parentheses here", 100.0), None);
    }

    #[test]
    fn status_fields_are_read_by_exact_key() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nvoluntary_ctxt_switches:\t7\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(text, "VmRSS"), Some(1024));
        assert_eq!(status_field(text, "VmHWM"), Some(2048));
        // "voluntary" must not match the "nonvoluntary" line, nor the reverse
        assert_eq!(status_field(text, "voluntary_ctxt_switches"), Some(7));
        assert_eq!(status_field(text, "nonvoluntary_ctxt_switches"), Some(3));
        assert_eq!(status_field(text, "VmSwap"), None);
    }

    #[test]
    fn schedstat_gives_run_and_wait_nanoseconds() {
        assert_eq!(
            parse_schedstat("169533696 293179488 69\n"),
            Some((169533696, 293179488))
        );
        assert_eq!(parse_schedstat("12"), None);
        assert_eq!(parse_schedstat("x y z"), None);
    }

    #[test]
    fn the_delta_keeps_names_that_used_cpu_most_first() {
        let line = |name: &str, seconds| CpuLine {
            name: name.into(),
            seconds,
        };
        let before = [line("a", 1.0), line("b", 2.0)];
        let after = [line("a", 1.0), line("b", 2.5), line("c", 1.0)];
        assert_eq!(
            thread_delta(&before, &after),
            vec![line("c", 1.0), line("b", 0.5)]
        );
    }

    #[test]
    fn this_process_can_read_itself() {
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        assert!(!threads(me).is_empty());
        let (now, peak) = rss(me).expect("VmRSS and VmHWM");
        assert!(now > 0 && peak >= now);
        assert!(context_switches(me).is_some());
        assert!(runqueue_wait(me).is_some());
    }
}
