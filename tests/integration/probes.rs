//! What the tests observe instead of waiting a fixed time (the counters of
//! passes done, a database barrier, the orchestrator's clock), the ports
//! they need without racing for them, and the rule for a missing tool
//! (skip outside CI, fail under it). Re-exported by `common`.

use std::io::Write;
use std::sync::Mutex;

use crate::common::Proc;

/// Counters of passes done (src/orchestrator/metrics.rs), for the tests
/// that must see that something did not happen: they wait for passes of
/// the job that would have done it, never for a fixed time.
pub const SCANS: &str = "orquesta_drop_folder_scans_total";
/// Reads that found a task file incomplete and left it to grow.
pub const INCOMPLETE_READS: &str = "orquesta_task_files_incomplete_total";
/// Results-flush ticks that found everything received already on disk.
pub const FLUSH_TICKS: &str = "orquesta_results_flush_ticks_total";
/// Dispatch sweeps (ended backoffs put back in line, a dispatch tried).
pub const SWEEPS: &str = "orquesta_dispatch_sweeps_total";
/// Reports of an ended attempt handled by the task queue.
pub const ATTEMPT_REPORTS: &str = "orquesta_attempt_reports_total";

/// The series of health checks of worker `id` that ended.
pub fn worker_checks(id: &str) -> String {
    format!("orquesta_worker_checks_total{{worker=\"{id}\"}}")
}

/// Returns once the orchestrator's database holds every change its task
/// queue had asked for before this call: a cancel of a task that does
/// not exist goes through the task queue to the database writer, whose
/// jobs commit in order, and is answered (404) after its commit.
pub fn store_barrier(orch: &Proc) {
    let r = orch.delete("/tasks/no-such-task-barrier");
    assert_eq!(r.status, 404, "{}", r.text());
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z`, the form the
/// orchestrator writes times in (a `retry_at`, say).
pub fn unix_seconds(iso: &str) -> f64 {
    let bad = || -> ! { panic!("expected YYYY-MM-DDTHH:MM:SS[.fff]Z, found {iso:?}") };
    let (date, time) = iso
        .strip_suffix('Z')
        .and_then(|s| s.split_once('T'))
        .unwrap_or_else(|| bad());
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().unwrap_or_else(|_| bad()))
        .collect();
    let t: Vec<f64> = time
        .split(':')
        .map(|p| p.parse().unwrap_or_else(|_| bad()))
        .collect();
    if d.len() != 3 || t.len() != 3 {
        bad();
    }
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    // days from the civil date (Howard Hinnant's algorithm)
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days as f64 * 86_400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

/// Seconds since the epoch now, by this machine's clock.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A TCP port of 127.0.0.1 that refuses connections and that no other
/// process can take while this lives: a socket bound to it that never
/// listens (a port bound and released at once could be taken by any
/// server started meanwhile, another test's included). For a worker entry
/// that must point at nothing.
pub struct DeadPort {
    fd: i32,
    pub port: u16,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        // SAFETY: plain socket calls on a descriptor this function owns,
        // with a sockaddr_in of the right size.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let bound = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
            let mut len = len;
            let named = libc::getsockname(fd, (&raw mut addr).cast(), &mut len);
            assert_eq!(named, 0, "getsockname: {}", std::io::Error::last_os_error());
            DeadPort {
                fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }
}

impl Drop for DeadPort {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// A port for a worker that `orquesta up` starts itself, at the port its
/// config_workers.json entry names: the one case where a test must pick a
/// port before the process that binds it exists (`up` has no port 0 for
/// its workers; every other server in these tests binds port 0 and says
/// its port, and a worker the orchestrator only needs to know about is
/// started first and written into the file after).
///
/// It is picked below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), where a bind to port 0 never
/// lands, so no server these tests start on port 0 can take it before `up`
/// does; no port is handed out twice in one test process; and it is free
/// when handed out. What remains is a process binding that very fixed port
/// in between (only one that names fixed ports itself: another run of this
/// suite on the same machine drawing the same random port).
pub fn config_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        // a cheap random draw: the clock, the pid and a counter, mixed
        let mut x = unix_now().to_bits()
            ^ u64::from(std::process::id()) << 32
            ^ DRAWS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let port = low + (x % u64::from(high - low)) as u16;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Whether these tests run under CI: the environment variable `CI` is
/// set (to anything; `.ci/run` sets `CI=true`, as CI services do).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// For a test that needs a tool this machine lacks (`what`: which, and
/// how to install it). Outside CI the test is skipped, and says so on
/// stderr, past the harness's capture (the caller returns); under CI
/// ([`under_ci`]) a missing tool is a failure: this panics.
pub fn missing_tool(test: &str, what: &str) {
    assert!(
        !under_ci(),
        "{test} needs {what}; CI is set, so a missing tool fails the test instead of skipping it"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n######## SKIP {test}: needs {what} (skipped only while CI is unset) ########\n"
    );
}
