//! Log lines written off the logging thread: a line is appended to a
//! buffer in memory, and a thread of its own writes what has gathered
//! every few milliseconds in one write. At INFO a worker logs two lines
//! per task; written one by one (a write, and for the log file a stat)
//! they cost about a third of its trivial-task throughput (issue 21).
//!
//! No line of the log file is ever dropped: a caller that finds
//! [`MAX_PENDING`] bytes waiting blocks until the thread has written them,
//! and [`flush_all`] (called as the process ends, `cli::main`) writes
//! what is left. Lines keep their order: one buffer, and one writer at a
//! time.
//!
//! Standard output is a copy for whoever watches ([`Background::start_echo`]):
//! a reader that stops reading (a pipe nobody drains, a terminal paused
//! with Ctrl-S) must not stop the process. When [`MAX_PENDING`] bytes wait
//! there, later lines are counted instead of kept, and the next write says
//! how many were left out and where they are. [`flush_all`] gives up on an
//! output stuck for longer than [`EXIT_PATIENCE`], so such a process still
//! exits when told to.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the thread lets lines gather after the first one arrives: at
/// most this late in the file, and at most one write per this interval.
pub const GATHER: Duration = Duration::from_millis(5);

/// Bytes that may wait before a caller waits for them to be written.
pub const MAX_PENDING: usize = 8 << 20;

/// How long [`flush_all`] waits for an output that is stuck in a write
/// (its reader stopped reading) before it leaves it.
pub const EXIT_PATIENCE: Duration = Duration::from_secs(2);

/// Where a batch of whole lines goes.
pub type Sink = Box<dyn Write + Send>;

struct Pending {
    bytes: Vec<u8>,
    /// The writer thread sleeps until told there are lines.
    writer_idle: bool,
    /// Callers waiting for room.
    full_waiters: usize,
    /// An echo: lines beyond [`MAX_PENDING`] are counted, not waited for.
    echo: bool,
    /// Lines left out since the last write (an echo only).
    left_out: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Lines arrived (to the writer thread).
    arrived: Condvar,
    /// Lines written (to callers waiting for room).
    written: Condvar,
    /// Held while a batch is taken and written, so batches keep their order
    /// whoever writes them (the thread, or [`flush_all`]).
    sink: Mutex<Sink>,
}

/// Every writer of this process, for [`flush_all`].
static ALL: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A log destination written by a thread of its own; `&Background` is
/// what tracing's layer writes each formatted line into.
pub struct Background {
    shared: Arc<Shared>,
}

impl Background {
    /// Starts the thread `name` that writes into `sink`. If no thread can
    /// be started, every line is written at once by its caller instead.
    pub fn start(name: &str, sink: Sink) -> Self {
        Self::started(name, sink, false)
    }

    /// As [`Background::start`], for a copy of lines kept elsewhere (the
    /// log file): a caller never waits for a reader that stopped reading;
    /// the lines it would have waited for are counted and said.
    pub fn start_echo(name: &str, sink: Sink) -> Self {
        Self::started(name, sink, true)
    }

    fn started(name: &str, sink: Sink, echo: bool) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                writer_idle: false,
                full_waiters: 0,
                echo,
                left_out: 0,
            }),
            arrived: Condvar::new(),
            written: Condvar::new(),
            sink: Mutex::new(sink),
        });
        let for_thread = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || write_forever(&for_thread));
        if started.is_err() {
            // nobody would write the buffer: callers write themselves
            lock(&shared.pending).full_waiters = usize::MAX;
        }
        lock(&ALL).push(Arc::clone(&shared));
        Self { shared }
    }
}

/// Writes what has gathered, every [`GATHER`] while lines come.
fn write_forever(shared: &Shared) {
    loop {
        {
            let mut p = lock(&shared.pending);
            while p.bytes.is_empty() {
                p.writer_idle = true;
                p = shared.arrived.wait(p).unwrap_or_else(|e| e.into_inner());
            }
        }
        std::thread::sleep(GATHER);
        write_pending(shared);
    }
}

/// Takes every line waiting and writes it (the sink held throughout, so
/// an earlier batch is never written after a later one).
fn write_pending(shared: &Shared) {
    let mut sink = lock(&shared.sink);
    let batch = {
        let mut p = lock(&shared.pending);
        let mut batch = std::mem::take(&mut p.bytes);
        // left out after everything that was waiting, before anything newer
        let left_out = std::mem::take(&mut p.left_out);
        if left_out > 0 {
            batch.extend_from_slice(left_out_notice(left_out).as_bytes());
        }
        if p.full_waiters > 0 {
            shared.written.notify_all();
        }
        batch
    };
    if !batch.is_empty() {
        // as tracing does with a failed write: nowhere else to say it
        let _ = sink.write_all(&batch);
        let _ = sink.flush();
    }
}

/// The line that stands for `n` lines an echo left out.
fn left_out_notice(n: u64) -> String {
    format!(
        "orquesta: {n} log line(s) left out here: this output was not being read; \
         the log file has every line\n"
    )
}

/// Writes every line still waiting in every writer of the process. Lines
/// logged after it (by threads still running) are written by the writer
/// threads as usual while the process lives. An echo is left to its own
/// thread, waited for at most [`EXIT_PATIENCE`]: its reader may have
/// stopped reading, and a write to it could then never return.
pub fn flush_all() {
    let all: Vec<Arc<Shared>> = lock(&ALL).clone();
    let deadline = std::time::Instant::now() + EXIT_PATIENCE;
    for shared in all {
        let echo = lock(&shared.pending).echo;
        if !echo {
            write_pending(&shared);
            continue;
        }
        loop {
            let mut p = lock(&shared.pending);
            if p.full_waiters == usize::MAX || p.writer_idle && p.bytes.is_empty() && p.left_out == 0 {
                break;
            }
            if std::mem::take(&mut p.writer_idle) {
                shared.arrived.notify_one();
            }
            drop(p);
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Write for &Background {
    /// tracing's fmt layer writes each event as one call with the whole line.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shared = &self.shared;
        let mut p = lock(&shared.pending);
        if p.full_waiters == usize::MAX {
            // no writer thread: this caller writes
            drop(p);
            let mut sink = lock(&shared.sink);
            sink.write_all(buf)?;
            sink.flush()?;
            return Ok(buf.len());
        }
        if p.echo && p.bytes.len() >= MAX_PENDING {
            p.left_out += 1;
            return Ok(buf.len());
        }
        while p.bytes.len() >= MAX_PENDING {
            p.full_waiters += 1;
            p = shared.written.wait(p).unwrap_or_else(|e| e.into_inner());
            p.full_waiters -= 1;
        }
        p.bytes.extend_from_slice(buf);
        if std::mem::take(&mut p.writer_idle) {
            shared.arrived.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Standard output as a sink: one locked write per batch.
pub struct StdoutSink;

impl Write for StdoutSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that keeps what it was given, batch by batch.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_from_many_threads_and_flushed_at_the_end() {
        let kept = Kept::default();
        let out = Arc::new(Background::start("test-log-writer", Box::new(kept.clone())));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let out = Arc::clone(&out);
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        (&*out).write_all(format!("t{t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        flush_all();
        let text = String::from_utf8(lock(&kept.0).concat()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let expected: Vec<String> = (0..5_000).map(|i| format!("t{t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines out of order or lost");
        }
        // gathered: far fewer writes than lines
        assert!(lock(&kept.0).len() < 20_000);
    }

    #[test]
    fn a_caller_waits_for_room_rather_than_drop_a_line() {
        let kept = Kept::default();
        let out = Background::start("test-log-writer-full", Box::new(kept.clone()));
        let line = vec![b'x'; 1 << 20];
        // more than MAX_PENDING in a burst: the later writes wait, none is lost
        for _ in 0..((2 * MAX_PENDING) >> 20) + 3 {
            (&out).write_all(&line).unwrap();
        }
        flush_all();
        let written: usize = lock(&kept.0).iter().map(Vec::len).sum();
        assert_eq!(written, (((2 * MAX_PENDING) >> 20) + 3) << 20);
    }

    /// A sink whose writes wait until it is opened: a reader that stopped.
    #[derive(Clone, Default)]
    struct Stopped {
        open: Arc<(Mutex<bool>, Condvar)>,
        kept: Kept,
    }

    impl Write for Stopped {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.open;
            let mut o = lock(open);
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.kept.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_echo_nobody_reads_neither_blocks_callers_nor_the_exit_and_says_what_it_left_out() {
        let stopped = Stopped::default();
        let out = Background::start_echo("test-log-echo", Box::new(stopped.clone()));
        let mut line = vec![b'x'; (1 << 20) - 1];
        line.push(b'\n');
        // far more than MAX_PENDING while the reader is stopped: no caller waits
        let lines = ((2 * MAX_PENDING) >> 20) + 3;
        for _ in 0..lines {
            (&out).write_all(&line).unwrap();
        }
        // and the exit's flush gives up on the stuck output
        let t = std::time::Instant::now();
        flush_all();
        assert!(
            t.elapsed() < EXIT_PATIENCE * 3,
            "flush_all waited {:?}",
            t.elapsed()
        );
        // the reader comes back: what was kept is written, then the count
        {
            let (open, cv) = &*stopped.open;
            *lock(open) = true;
            cv.notify_all();
        }
        let text_when = |done: &dyn Fn(&str) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let text = String::from_utf8_lossy(&lock(&stopped.kept.0).concat()).into_owned();
                if done(&text) || std::time::Instant::now() > deadline {
                    return text;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let text = text_when(&|t| t.contains("left out"));
        let notice = text.lines().find(|l| l.contains("left out")).expect("the notice");
        let left: usize = notice.split_whitespace().nth(1).unwrap().parse().unwrap();
        let kept = text.lines().filter(|l| l.len() == line.len() - 1).count();
        assert_eq!(
            kept + left,
            lines,
            "every line is either written or counted: {notice}"
        );
        assert!(left > 0, "some lines were left out: {notice}");
        // and lines flow again
        (&out).write_all(b"after\n").unwrap();
        assert!(text_when(&|t| t.ends_with("after\n")).ends_with("after\n"));
    }
}
