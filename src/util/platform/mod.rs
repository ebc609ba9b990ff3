//! Everything that differs between Unix and Windows, in one place: each
//! function here has a Unix side (`unix.rs`, through `libc`) and a Windows
//! side (`windows.rs`, through `windows-sys`), and the rest of the crate
//! calls only these. docs/windows.md says what a Windows user sees differ.
//!
//! | piece                         | Unix                          | Windows                                   |
//! |-------------------------------|-------------------------------|-------------------------------------------|
//! | stop requests counted by `up` | SIGINT, SIGTERM (`sigaction`) | Ctrl-C, Ctrl-Break (console control events) |
//! | Ctrl-C held during a write    | signal mask of the thread     | a console handler that defers it          |
//! | a child dies with its parent  | `PR_SET_PDEATHSIG` (Linux)    | a kill-on-close Job Object                |
//! | asking a child to stop        | SIGTERM                       | Ctrl-Break to its own process group       |
//! | ending a command and what it started | SIGKILL to its process group | the child only                     |
//! | the parent's pid              | `getppid`                     | not needed (the job covers the race)      |
//! | memory figures                | `sysconf`, `/proc`, `getrusage` | `GlobalMemoryStatusEx`, working set     |
//! | open-files limit              | `RLIMIT_NOFILE` raised        | none: handles have no such limit          |
//! | reading an untrusted file     | `O_NOFOLLOW`, `O_NONBLOCK`    | reparse point not followed; a file held by its writer is "busy" |
//! | ending an unread `/events` stream | `SO_SNDBUF`, `SO_LINGER`, `shutdown` | not done: it stays until its client goes |
//! | freed memory given back       | `malloc_trim` (glibc)         | the heap does it by itself                |

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub use imp::{
    ask_to_stop, die_with_parent, end_connection, exit_with_parent, give_back_memory, hold_interrupts,
    kill_group, limit_send_buffer, make_stoppable, open_untrusted, own_group, parent_pid,
    peak_resident_bytes, raise_open_files, raw_socket, resident_bytes, total_memory_bytes, InterruptsHeld,
    RawSocket,
};

/// Stop requests received since [`count_stop_requests`].
static STOP_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Counts stop requests from now on: SIGINT and SIGTERM on Unix, Ctrl-C
/// and Ctrl-Break on Windows. Call it before the actix system starts; the
/// orchestrator's own handler still sees the first request, and
/// [`stop_requests`] sees every one of them, the second Ctrl-C included.
pub fn count_stop_requests() {
    imp::count_stop_requests();
}

/// Called by the platform's handler for each stop request (on Unix from a
/// signal handler: an atomic add is async-signal-safe).
fn note_stop_request() {
    STOP_REQUESTS.fetch_add(1, Ordering::SeqCst);
}

/// How many stop requests arrived (0 unless [`count_stop_requests`] ran).
pub fn stop_requests() -> usize {
    STOP_REQUESTS.load(Ordering::SeqCst)
}

/// CPU clock ticks per second, the unit of `/proc/…/stat` (None where
/// there is no such clock).
pub fn clock_ticks_per_second() -> Option<f64> {
    imp::clock_ticks_per_second()
}

/// Why opening a file with [`open_untrusted`] failed, where the answer is
/// not one of the portable [`io::ErrorKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRefused {
    /// A symbolic link (or a loop of them) where none may be followed.
    Symlink,
    /// A socket, which cannot be opened as a file.
    Socket,
    /// Another process holds the file open and does not share it (Windows:
    /// its writer has not closed it yet): try again later.
    Busy,
}

/// What an error from opening with [`open_untrusted`] means, if it is
/// one of the [`OpenRefused`] cases.
pub fn open_refused(e: &io::Error) -> Option<OpenRefused> {
    imp::open_refused(e)
}
