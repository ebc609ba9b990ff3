//! The Unix side of [`crate::util::platform`]: signals, the signal mask,
//! `PR_SET_PDEATHSIG`, `getppid`, `sysconf`/`getrusage` and
//! `RLIMIT_NOFILE`, through `libc`.

use std::fs::OpenOptions;
use std::io;
use std::process::{Child, Command};

use super::OpenRefused;

extern "C" fn count_signal(_: libc::c_int) {
    super::note_stop_request();
}

/// Installs a handler that counts SIGINT and SIGTERM. Before the actix
/// system starts: tokio's handler (signal-hook-registry) chains to the one
/// found installed, so both see every signal.
pub fn count_stop_requests() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only increments an atomic (async-signal-safe);
        // the struct is fully initialised before the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Signals held off by [`hold_interrupts`].
const HELD_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT blocked for this thread until
/// dropped; one that arrives meanwhile is delivered then.
pub struct InterruptsHeld {
    previous: libc::sigset_t,
}

/// Holds off the signals that would end the process, for this thread.
pub fn hold_interrupts() -> InterruptsHeld {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it,
    // and pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HELD_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
        InterruptsHeld { previous }
    }
}

impl Drop for InterruptsHeld {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `hold_interrupts`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

/// The child gets SIGTERM when the thread that started it ends (Linux:
/// `PR_SET_PDEATHSIG`), which for `up` means when `up` ends, even by
/// SIGKILL. Children restarted by a supervisor thread get it when that
/// thread ends, which it does only once `up` stops them anyway. Other
/// Unixes have no such flag; the parent-pid check at the child's start
/// ([`parent_pid`]) is all there is.
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Nothing to do on Unix: SIGTERM reaches any child.
pub fn make_stoppable(_: &mut Command) {}

/// SIGTERM to the child: it drains and exits.
pub fn ask_to_stop(child: &Child) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The child leads a process group of its own, so that [`kill_group`]
/// ends it and everything it started (a shell's `sleep`, a CLI's helper),
/// not only the shell.
pub fn own_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
}

/// SIGKILL to the process group the child leads (see [`own_group`]).
pub fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; a negative pid
        // names the group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

/// This process gets SIGTERM (and so drains and stops) when the process
/// that started it ends, even by SIGKILL: on Linux through
/// `PR_SET_PDEATHSIG` on itself, elsewhere by a thread that watches its
/// parent's pid once a second. Returns false when the parent is already
/// gone (it died before the watch was set).
pub fn exit_with_parent() -> bool {
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG touches no memory.
    let watched = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } == 0;
    #[cfg(not(target_os = "linux"))]
    let watched = false;
    // SAFETY: as above.
    if unsafe { libc::getppid() } != parent {
        return false;
    }
    if !watched {
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            // SAFETY: getppid, getpid and kill have no memory preconditions.
            unsafe {
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                    return;
                }
            }
        });
    }
    true
}

/// This process's parent.
pub fn parent_pid() -> Option<u32> {
    // SAFETY: getppid has no preconditions and cannot fail.
    u32::try_from(unsafe { libc::getppid() }).ok()
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

/// Resident memory now, in bytes (Linux: `/proc/self/statm`; elsewhere
/// None, and the caller uses the peak).
pub fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Some(pages * page.max(0) as u64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Peak resident memory since the process started, in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return None;
        }
        usage
    };
    let max = usage.ru_maxrss.max(0) as u64;
    // Linux reports kilobytes, macOS bytes
    Some(if cfg!(target_os = "macos") {
        max
    } else {
        max * 1024
    })
}

/// CPU clock ticks per second (`_SC_CLK_TCK`).
pub fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

/// Raises the soft open-files limit (`RLIMIT_NOFILE`) to the hard limit:
/// every HTTP connection, task file and database handle is one descriptor,
/// and many systems start a process with a soft limit of 1024 though the
/// hard limit is far higher. Answers the limit now in force (None if it
/// cannot be read).
pub fn raise_open_files() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot read the open-files limit");
        return None;
    }
    // an unlimited hard limit cannot be the soft one (the kernel caps it
    // at fs.nr_open): a million descriptors is plenty
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur >= target {
        tracing::debug!(
            open_files_limit = lim.rlim_cur,
            "open-files limit already at the hard limit"
        );
        return Some(lim.rlim_cur);
    }
    let before = lim.rlim_cur;
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), open_files_limit = before,
            "cannot raise the open-files limit");
        return Some(before);
    }
    tracing::debug!(
        from = before,
        to = raised.rlim_cur,
        "open-files limit raised to the hard limit"
    );
    Some(raised.rlim_cur)
}

/// Opens without following a symbolic link in the last component (unless
/// `follow`) and without blocking (`O_NONBLOCK`, so a FIFO does not wait
/// for a writer).
pub fn open_untrusted(options: &mut OpenOptions, follow: bool) {
    use std::os::unix::fs::OpenOptionsExt;
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    options.custom_flags(nofollow | libc::O_NONBLOCK);
}

/// `ELOOP` is a link not followed; `ENXIO` a socket.
pub fn open_refused(e: &io::Error) -> Option<OpenRefused> {
    match e.raw_os_error()? {
        libc::ELOOP => Some(OpenRefused::Symlink),
        libc::ENXIO => Some(OpenRefused::Socket),
        _ => None,
    }
}

/// A connection's socket as the OS names it.
pub type RawSocket = std::os::fd::RawFd;

/// The socket under a TCP stream.
pub fn raw_socket(stream: &impl std::os::fd::AsRawFd) -> RawSocket {
    stream.as_raw_fd()
}

/// Caps what the kernel holds unsent on `socket` at about `bytes` (Linux
/// doubles it and has a floor of its own).
pub fn limit_send_buffer(socket: RawSocket, bytes: usize) {
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads a c_int of the size given; an fd that is
    // not a socket only makes it fail.
    unsafe {
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Ends the connection on `socket`: shut down both ways (which wakes
/// whoever waits on it), and reset rather than linger when it is closed,
/// so what it held unsent is dropped.
pub fn end_connection(socket: RawSocket) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a `linger` of the size given; shutdown
    // touches no memory.
    unsafe {
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        libc::shutdown(socket, libc::SHUT_RDWR);
    }
}

/// Gives the memory freed since to the OS: glibc keeps freed heap in each
/// thread's arena, so a burst of large requests handled on several
/// threads would otherwise stay resident for ever.
pub fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        // start below the hard limit, as a process started by a login shell does
        let lowered = libc::rlimit {
            rlim_cur: lim.rlim_cur.min(1000),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let now = raise_open_files().unwrap();
        assert!(now >= lim.rlim_cur, "{now}");
        if lim.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(now, lim.rlim_max);
        }
    }

    #[test]
    fn the_parent_is_known() {
        assert!(parent_pid().is_some_and(|p| p > 0));
    }
}
