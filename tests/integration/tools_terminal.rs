//! `orquesta gen`'s guide through a real pseudo-terminal: Enter
//! everywhere, a bad answer asked again, Ctrl-C.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{orquesta, stdout};

use crate::tools::{files_in, read_json, run_in, tasks};

/// `orquesta ARGS…` on a pseudo-terminal: its own session, the terminal
/// as its controlling terminal, so Ctrl-C is a real SIGINT.
struct Terminal {
    master: File,
    child: Child,
    seen: String,
    cursor: usize,
}

impl Terminal {
    fn start(dir: &Path, args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other pointers may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
        let mut cmd = orquesta();
        cmd.args(args)
            .current_dir(dir)
            .env_remove("TASK_QUEUE_DIR")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // as a shell starts a foreground job: Ctrl-C takes its
                // default action even when the tests run in a background
                // job, which inherits SIGINT ignored
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("orquesta starts on the terminal");
        drop(cmd); // the parent's copies of the terminal's slave side
        Terminal {
            master,
            child,
            seen: String::new(),
            cursor: 0,
        }
    }

    /// Reads until `text` appears after the last match (20 s at most).
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(at) = self.seen[self.cursor..].find(text) {
                self.cursor += at + text.len();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {text:?}; the terminal shows:\n{}",
                self.seen
            );
            let mut poll = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().min(500) as i32) };
            if ready <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                // EIO: the program exited and closed the terminal
                _ => panic!("the terminal closed before {text:?}; it showed:\n{}", self.seen),
            }
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits for the program to end (20 s at most).
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the program did not end; the terminal shows:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The questions of the guide, in order.
const QUESTIONS: [&str; 8] = [
    "How many tasks? [10]: ",
    "Algorithm (reference, optimized, python, cython, or mix of python and cython)? [mix]: ",
    "Particles per task, N or MIN..MAX (at least 13)? [100..1000]: ",
    "Time steps per task, N or MIN..MAX? [100..1000]: ",
    "Priority (high, medium, low, or mix)? [mix]: ",
    "Generator seed (the same seed gives the same tasks)? [",
    "Description of the batch? [Particle simulation tasks]: ",
    "File name (a bare name goes into task_queues/)? [tasks_",
];

#[test]
fn gen_in_a_terminal_enter_everywhere_writes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Terminal::start(dir.path(), &["gen"]);
    for q in QUESTIONS {
        t.expect(q);
        t.send("\r");
    }
    t.expect("Preview of task_queues/tasks_");
    t.expect("Write 10 tasks to task_queues/tasks_");
    t.expect("? (y/n) [Y]: ");
    t.send("\r");
    t.expect("wrote task_queues/tasks_");
    assert_eq!(t.wait().code(), Some(0));
    let queue = dir.path().join("task_queues");
    let names = files_in(&queue);
    assert_eq!(names.len(), 1, "{names:?}");
    let file = read_json(&queue.join(&names[0]));
    assert_eq!(tasks(&file).len(), 10);
    let out = run_in(
        dir.path(),
        &["validate", &format!("task_queues/{}", names[0])],
        &[],
    );
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn gen_in_a_terminal_asks_again_and_can_be_declined() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Terminal::start(dir.path(), &["gen"]);
    t.expect(QUESTIONS[0]);
    t.send("many\r");
    t.expect("  ! expected a whole number of tasks from 1 to 1000000, found \"many\"; please try again");
    t.expect(QUESTIONS[0]);
    t.send("2\r");
    t.expect(QUESTIONS[1]);
    t.send("\r");
    t.expect(QUESTIONS[2]);
    t.send("5..20\r");
    t.expect("  ! 5 particles: expected a whole number ≥ 13, found 5: at density 0.5");
    t.expect(QUESTIONS[2]);
    t.send("13..20\r");
    for q in &QUESTIONS[3..7] {
        t.expect(q);
        t.send("\r");
    }
    t.expect(QUESTIONS[7]);
    t.send("batch.txt\r");
    t.expect("  ! expected a file name ending in .json");
    t.send("mine.json\r");
    t.expect("Write 2 tasks to task_queues/mine.json? (y/n) [Y]: ");
    t.send("n\r");
    t.expect("nothing was written");
    assert_eq!(t.wait().code(), Some(1));
    assert!(files_in(&dir.path().join("task_queues")).is_empty());
}

#[test]
fn ctrl_c_in_the_terminal_guide_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Terminal::start(dir.path(), &["gen"]);
    for q in QUESTIONS {
        t.expect(q);
        t.send("\r");
    }
    t.expect("? (y/n) [Y]: ");
    t.send("\x03");
    let status = t.wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let queue = dir.path().join("task_queues");
    assert!(files_in(&queue).is_empty(), "{:?}", files_in(&queue));
    assert!(
        files_in(dir.path()).iter().all(|n| n == "task_queues"),
        "{:?}",
        files_in(dir.path())
    );
}
