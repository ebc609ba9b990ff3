//! The Windows side of [`crate::util::platform`]: console control events
//! (Ctrl-C, Ctrl-Break) for stop requests, a kill-on-close Job Object for
//! children that must die with `up`, memory figures from the working set,
//! and file opening that does not follow a reparse point.

use std::fs::OpenOptions;
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Once, OnceLock};

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    ERROR_CANT_RESOLVE_FILENAME, ERROR_LOCK_VIOLATION, ERROR_SHARING_VIOLATION, FALSE, TRUE,
};
use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OPEN_REPARSE_POINT;
use windows_sys::Win32::System::Console::{
    GenerateConsoleCtrlEvent, SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_C_EVENT,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation, SetInformationJobObject,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, CREATE_NEW_PROCESS_GROUP};

use super::OpenRefused;

/// Counts Ctrl-C and Ctrl-Break from now on. tokio's console handler
/// tells every listener of an event, so a listener of our own (on a
/// thread with its own small runtime) counts each one while the
/// orchestrator's listener still sees it; and while a listener exists,
/// the event never falls through to Windows' default (ending the process).
pub fn count_stop_requests() {
    let (ready_tx, ready_rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("stop-requests".into())
        .spawn(move || {
            let runtime = match actix_rt::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let listeners = tokio::signal::windows::ctrl_c()
                    .and_then(|c| Ok((c, tokio::signal::windows::ctrl_break()?)));
                let (mut ctrl_c, mut ctrl_break) = match listeners {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    futures_util::future::select(Box::pin(ctrl_c.recv()), Box::pin(ctrl_break.recv())).await;
                    super::note_stop_request();
                }
            });
        });
    // wait until the listeners are in place, so no early Ctrl-C is missed
    let ready = spawned.map_err(io::Error::other).and_then(|_| {
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the listener thread ended")))
    });
    if let Err(e) = ready {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C; a second Ctrl-C will not stop at once");
    }
}

/// Holders of [`hold_interrupts`] alive now.
static HOLDING: AtomicUsize = AtomicUsize::new(0);
/// A Ctrl-C or Ctrl-Break arrived while held.
static PENDING: AtomicBool = AtomicBool::new(false);

/// The console handler of [`hold_interrupts`]: while held, Ctrl-C and
/// Ctrl-Break are noted and reported handled; otherwise they go on to the
/// next handler (Windows' default ends the process).
unsafe extern "system" fn defer_interrupt(event: u32) -> BOOL {
    if matches!(event, CTRL_C_EVENT | CTRL_BREAK_EVENT) && HOLDING.load(Ordering::SeqCst) > 0 {
        PENDING.store(true, Ordering::SeqCst);
        return TRUE;
    }
    FALSE
}

/// Ctrl-C and Ctrl-Break held off until dropped; one that arrived
/// meanwhile then ends the process as Windows would have
/// (`STATUS_CONTROL_C_EXIT`).
pub struct InterruptsHeld(());

/// The exit code Windows gives a process ended by Ctrl-C.
const STATUS_CONTROL_C_EXIT: u32 = 0xC000_013A;

/// Holds off Ctrl-C and Ctrl-Break for the whole process (Windows
/// delivers them on a thread of their own, not to the one writing).
pub fn hold_interrupts() -> InterruptsHeld {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: the handler only touches atomics and lives as long as the process.
        if unsafe { SetConsoleCtrlHandler(Some(defer_interrupt), TRUE) } == FALSE {
            tracing::debug!(error = %io::Error::last_os_error(), "cannot hold off Ctrl-C");
        }
    });
    HOLDING.fetch_add(1, Ordering::SeqCst);
    InterruptsHeld(())
}

impl Drop for InterruptsHeld {
    fn drop(&mut self) {
        if HOLDING.fetch_sub(1, Ordering::SeqCst) == 1 && PENDING.swap(false, Ordering::SeqCst) {
            crate::util::log_writer::flush_all();
            std::process::exit(STATUS_CONTROL_C_EXIT as i32);
        }
    }
}

/// The Job Object this process runs in from the first [`die_with_parent`]
/// on; its handle is never closed, so Windows closes it when the process
/// ends, however it ends, and then ends every process still in the job.
static JOB: OnceLock<Option<usize>> = OnceLock::new();

/// Puts this process in a kill-on-close Job Object (once): children start
/// in their parent's job, so every child started from now on ends when
/// this process ends, even when it is killed (Task Manager, `taskkill /F`).
/// Windows has no `PR_SET_PDEATHSIG`; the job covers it and its race at
/// start. Failing that (a job that forbids nesting), children may outlive
/// `up` and it says so at debug level.
pub fn die_with_parent(_: &mut Command) {
    JOB.get_or_init(|| {
        // SAFETY: plain Win32 calls on a handle we own; the struct is
        // zeroed plain data, its size given.
        unsafe {
            let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
            if job.is_null() {
                tracing::debug!(error = %io::Error::last_os_error(), "cannot create a job object");
                return None;
            }
            let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
            limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            let set = SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            );
            if set == FALSE || AssignProcessToJobObject(job, GetCurrentProcess()) == FALSE {
                tracing::debug!(error = %io::Error::last_os_error(),
                    "cannot put this process in a kill-on-close job; its children may outlive it");
                return None;
            }
            Some(job as usize)
        }
    });
}

/// Gives the child a console process group of its own, which
/// [`ask_to_stop`] sends Ctrl-Break to. (Windows then turns Ctrl-C off in
/// the child: a Ctrl-C typed in the console reaches only the parent,
/// which stops the children itself.)
pub fn make_stoppable(cmd: &mut Command) {
    use std::os::windows::process::CommandExt;
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP);
}

/// Ctrl-Break to the child's process group (see [`make_stoppable`]): it
/// drains and exits. Fails when this process has no console to send it
/// through; the caller then ends the child at once.
pub fn ask_to_stop(child: &Child) -> io::Result<()> {
    // SAFETY: no memory is passed; a wrong group id is an error, not UB.
    if unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.id()) } == FALSE {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Nothing more on Windows: [`kill_group`] ends the child itself.
pub fn own_group(_: &mut Command) {}

/// Ends the child (its own children are not followed on Windows).
pub fn kill_group(child: &mut Child) {
    let _ = child.kill();
}

/// Not available on Windows: a worker started by another program there is
/// tied to it through a Job Object by that program, if at all; answers
/// true (nothing is known to be gone).
pub fn exit_with_parent() -> bool {
    true
}

/// Not needed on Windows: a child started in the job cannot outlive a
/// parent that died before it started (see [`die_with_parent`]).
pub fn parent_pid() -> Option<u32> {
    None
}

/// The machine's physical memory in bytes.
pub fn total_memory_bytes() -> Option<u64> {
    // SAFETY: the struct is plain data with its length set, as the call asks.
    unsafe {
        let mut status: MEMORYSTATUSEX = std::mem::zeroed();
        status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
        (GlobalMemoryStatusEx(&mut status) != FALSE).then_some(status.ullTotalPhys)
    }
}

/// This process's memory counters (the working set is what Windows calls
/// resident memory).
fn memory_counters() -> Option<PROCESS_MEMORY_COUNTERS> {
    // SAFETY: the struct is plain data with its size given; the pseudo
    // handle of the current process needs no closing.
    unsafe {
        let mut counters: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        counters.cb = size;
        (K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) != FALSE).then_some(counters)
    }
}

/// The working set now, in bytes.
pub fn resident_bytes() -> Option<u64> {
    memory_counters().map(|c| c.WorkingSetSize as u64)
}

/// The peak working set since the process started, in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    memory_counters().map(|c| c.PeakWorkingSetSize as u64)
}

/// No clock ticks: there is no `/proc` to read them from.
pub fn clock_ticks_per_second() -> Option<f64> {
    None
}

/// Windows has no open-files limit to raise: handles and sockets are
/// bounded by memory, not by a per-process soft limit like Unix's
/// `RLIMIT_NOFILE`. None: `MAX_CONNECTIONS` is used as it is.
pub fn raise_open_files() -> Option<u64> {
    None
}

/// Opens a reparse point (a symbolic link) itself rather than what it
/// points to, unless `follow`; the caller sees a link in the metadata.
/// Windows opens never block on a pipe the way a Unix FIFO does.
pub fn open_untrusted(options: &mut OpenOptions, follow: bool) {
    use std::os::windows::fs::OpenOptionsExt;
    if !follow {
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
}

/// A sharing or lock violation means another process (the writer) holds
/// the file without sharing it: busy. A name that cannot be resolved is a
/// loop of links.
pub fn open_refused(e: &io::Error) -> Option<OpenRefused> {
    let code = u32::try_from(e.raw_os_error()?).ok()?;
    match code {
        ERROR_SHARING_VIOLATION | ERROR_LOCK_VIOLATION => Some(OpenRefused::Busy),
        ERROR_CANT_RESOLVE_FILENAME => Some(OpenRefused::Symlink),
        _ => None,
    }
}

/// A connection's socket as the OS names it.
pub type RawSocket = std::os::windows::io::RawSocket;

/// The socket under a TCP stream.
pub fn raw_socket(stream: &impl std::os::windows::io::AsRawSocket) -> RawSocket {
    stream.as_raw_socket()
}

/// Not done on Windows: the send buffer keeps its size (docs/windows.md).
pub fn limit_send_buffer(_: RawSocket, _: usize) {}

/// Not done on Windows: an `/events` stream nobody reads stays open until
/// its client disconnects (docs/windows.md).
pub fn end_connection(_: RawSocket) {}

/// The Windows heap gives freed memory back by itself.
pub fn give_back_memory() {}
