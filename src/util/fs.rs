//! File helpers: atomic replacement, so that a reader (or a crash) never
//! sees half a file; reading a file someone else controls (the drop
//! folder) without following links or blocking; file names made safe to
//! log.
//!
//! The temporary file comes from `tempfile`: a random name opened with
//! `O_EXCL` beside the target, so two writers of the same path (two
//! processes, or two threads of one) never share a temporary, and the last
//! rename wins with a whole file.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::util::platform::{self, OpenRefused};

/// The folder `path` lives in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A new temporary file beside `path` holding `bytes`, flushed to disk;
/// removed on drop unless persisted. Its name, `.NAME.XXXXXX.tmp`, is one
/// the FileWatcher ignores (a leading `.` and a `.tmp` end), so one written
/// into `task_queues/` is never picked up half-written. The folder is made
/// if missing.
pub fn temp_beside(path: &Path, bytes: &[u8]) -> io::Result<NamedTempFile> {
    let file = unflushed_beside(path, bytes)?;
    file.as_file().sync_all()?;
    Ok(file)
}

/// [`temp_beside`] without the flush to disk.
fn unflushed_beside(path: &Path, bytes: &[u8]) -> io::Result<NamedTempFile> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // the mode `File::create` would give (0o666 less the umask), not
    // tempfile's private 0o600: results and task files are read by others
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut file = builder.tempfile_in(dir)?;
    file.write_all(bytes)?;
    Ok(file)
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    rename_over(temp_beside(path, bytes)?, path)
}

/// Renames a temporary file written beside `path` over it.
fn rename_over(file: NamedTempFile, path: &Path) -> io::Result<()> {
    file.persist(path).map(drop).map_err(|e| e.error)
}

/// Replaces `path` with `bytes` through a temporary file in the same
/// folder, as [`write_atomic`] does, but without flushing it to disk
/// first: for a status snapshot rewritten every few seconds
/// (`worker_<id>_state.json`), whose readers must see the old file or
/// the new one, never half of one, but which no one needs to survive a
/// power cut (the next write replaces it). A flush per write cost a disk
/// sync per write per busy worker: hundreds of workers on one machine
/// queued behind each other's syncs.
pub fn replace_snapshot(path: &Path, bytes: &[u8]) -> io::Result<()> {
    rename_over(unflushed_beside(path, bytes)?, path)
}

/// [`write_atomic`] for a file only its owner may read (a secret): the
/// temporary file keeps tempfile's own 0o600 mode on Unix.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(".secret.")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    rename_over(file, path)
}

/// Why [`read_regular`] read nothing.
#[derive(Debug)]
pub enum NotRead {
    /// No such file (any more).
    Gone,
    /// A symbolic link (or a loop of them): never followed.
    Symlink,
    /// Something else than a regular file: `"a directory"`, `"a FIFO"`, …
    NotRegular(&'static str),
    /// Larger than the limit; the size as `fstat` saw it.
    TooLarge(u64),
    /// Held open, unshared, by another process (Windows: its writer has
    /// not closed it yet): read it later.
    Busy,
    Io(io::Error),
}

/// What kind of entry a file type is, for messages.
pub fn kind_of(ft: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() || ft.is_char_device() {
            return "a device";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Reads at most `max_bytes` of the regular file at `path`, which another
/// user may swap for anything at any moment: opened without following a
/// symbolic link (`O_NOFOLLOW`; on Windows the reparse point itself) and
/// without blocking (`O_NONBLOCK`, so a FIFO does not wait for a writer),
/// then `fstat`-ed to require a regular file, then read up to
/// `max_bytes + 1` bytes (so `/dev/zero` or a file that grows cannot take
/// memory without bound). See [`platform::open_untrusted`].
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<Vec<u8>, NotRead> {
    read_bounded(path, max_bytes, false)
}

/// Reads a file a setting names (the token file, a certificate, `.env`,
/// the workers file), at most `max_bytes`: a symbolic link is followed
/// (the operator chose it: `/run/credentials/…`, a secret mounted by
/// Kubernetes), but what it leads to must be a regular file, opened
/// without blocking, so a FIFO or `/dev/zero` named by mistake is an
/// error at once instead of a start-up that hangs or eats memory. Errors
/// say what was found; `NotFound` stays `NotFound`.
pub fn read_setting_file(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    read_bounded(path, max_bytes, true).map_err(|e| match e {
        NotRead::Gone => io::Error::from(io::ErrorKind::NotFound),
        NotRead::Symlink => io::Error::other("a loop of symbolic links"),
        NotRead::Busy => io::Error::other("another process holds it open without sharing it; try again"),
        NotRead::NotRegular(kind) => io::Error::other(format!("it is {kind}, not a regular file")),
        NotRead::TooLarge(size) => io::Error::other(format!(
            "it is larger than {max_bytes} bytes ({size} or more); is it the right file?"
        )),
        NotRead::Io(e) => e,
    })
}

fn read_bounded(path: &Path, max_bytes: u64, follow: bool) -> Result<Vec<u8>, NotRead> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    platform::open_untrusted(&mut options, follow);
    let file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => NotRead::Gone,
        _ => refused(e),
    })?;
    let meta = file.metadata().map_err(NotRead::Io)?;
    // Windows opened the link itself (Unix refused to open it: ELOOP)
    if meta.file_type().is_symlink() {
        return Err(NotRead::Symlink);
    }
    if !meta.is_file() {
        return Err(NotRead::NotRegular(kind_of(&meta.file_type())));
    }
    if meta.len() > max_bytes {
        return Err(NotRead::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // on Windows a byte-range lock of the writer's fails the read: busy
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(refused)?;
    if bytes.len() as u64 > max_bytes {
        return Err(NotRead::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// An open or read error as [`NotRead`]: a link not followed, a socket,
/// a file its writer still holds, or any other error.
fn refused(e: io::Error) -> NotRead {
    match platform::open_refused(&e) {
        Some(OpenRefused::Symlink) => NotRead::Symlink,
        Some(OpenRefused::Socket) => NotRead::NotRegular("a socket"),
        Some(OpenRefused::Busy) => NotRead::Busy,
        None => NotRead::Io(e),
    }
}

/// A file name as it may be logged or written into a report: control
/// characters (a newline that would forge a log line, an escape sequence
/// for the terminal) and bytes that are not UTF-8 are shown escaped
/// (`\n`, `\u{1b}`, `\x{ff}`).
pub fn escape_name(name: &OsStr) -> String {
    let lossy = name.to_string_lossy();
    let mut out = String::with_capacity(lossy.len());
    #[cfg(unix)]
    if lossy.contains('\u{fffd}') {
        use std::os::unix::ffi::OsStrExt;
        // not UTF-8: show every byte that is not printable ASCII
        for &b in name.as_bytes() {
            if (0x20..0x7f).contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("\\x{{{b:02x}}}"));
            }
        }
        return out;
    }
    for c in lossy.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The names in a folder, sorted (for tests that check what was left).
#[cfg(test)]
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_files_follow_links_but_refuse_fifos_devices_and_floods() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("token");
        fs::write(&real, "s3cret\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_setting_file(&link, 64).unwrap(), b"s3cret\n");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_setting_file(&fifo, 64).unwrap_err().to_string();
        assert!(e.contains("FIFO") && e.contains("not a regular file"), "{e}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_setting_file(&zero, 64).unwrap_err().to_string();
        assert!(e.contains("a device"), "{e}");
        let e = read_setting_file(&real, 3).unwrap_err().to_string();
        assert!(e.contains("larger than 3 bytes"), "{e}");
        let gone = read_setting_file(&dir.path().join("nope"), 64).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_atomic(&path, b"first version, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // a snapshot replaces it the same way, unflushed
        replace_snapshot(&path, b"third, the longest of them all").unwrap();
        replace_snapshot(&path, b"fourth").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fourth");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn concurrent_writers_of_one_path_never_tear_it() {
        use std::sync::atomic::{AtomicBool, Ordering};

        // Two threads rewrite the same file with contents of different
        // lengths while a third reads it: every read is one writer's whole
        // content, and at the end no temporary is left behind. (With one
        // predictable temporary name per process, the writers truncated and
        // renamed each other's temporaries.)
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let contents: [Vec<u8>; 2] = [vec![b'a'; 64 * 1024], vec![b'b'; 3]];
        write_atomic(&path, &contents[0]).unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let read = fs::read(&path).unwrap();
                    assert!(contents.contains(&read), "a torn file of {} bytes", read.len());
                }
            });
            let writers: Vec<_> = contents
                .iter()
                .map(|content| {
                    let path = &path;
                    s.spawn(move || {
                        for _ in 0..200 {
                            write_atomic(path, content).unwrap();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        let last = fs::read(&path).unwrap();
        assert!(contents.contains(&last));
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_gets_the_usual_mode_not_a_private_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        write_atomic(&path, b"[]").unwrap();
        fs::write(dir.path().join("plain"), b"[]").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&dir.path().join("plain")));
    }

    #[test]
    fn names_are_escaped_for_logs() {
        assert_eq!(escape_name(OsStr::new("a.json")), "a.json");
        assert_eq!(escape_name(OsStr::new("é ñ.json")), "é ñ.json");
        assert_eq!(
            escape_name(OsStr::new("x.json\nERROR forged line")),
            "x.json\\nERROR forged line"
        );
        assert_eq!(escape_name(OsStr::new("a\u{1b}[31m")), "a\\u{1b}[31m");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            assert_eq!(escape_name(OsStr::from_bytes(b"b\xff.json")), "b\\x{ff}.json");
        }
    }

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_and_never_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_regular(&file, 10).unwrap(), b"0123456789");
        assert!(matches!(read_regular(&file, 9), Err(NotRead::TooLarge(10))));
        assert!(matches!(
            read_regular(&dir.path().join("none"), 9),
            Err(NotRead::Gone)
        ));
        // links are not followed, even to a regular file, even in a loop
        let link = dir.path().join("l.json");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(read_regular(&link, 100), Err(NotRead::Symlink)));
        let zero = dir.path().join("z.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(matches!(read_regular(&zero, 100), Err(NotRead::Symlink)));
        let loop_ = dir.path().join("loop.json");
        std::os::unix::fs::symlink(&loop_, &loop_).unwrap();
        assert!(matches!(read_regular(&loop_, 100), Err(NotRead::Symlink)));
        // a FIFO with no writer answers at once instead of blocking
        let fifo = dir.path().join("f.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(read_regular(&fifo, 100), Err(NotRead::NotRegular(k)) if k.contains("FIFO")));
        assert!(matches!(
            read_regular(dir.path(), 100),
            Err(NotRead::NotRegular("a directory"))
        ));
        // a device is refused by fstat, never read
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 100),
            Err(NotRead::NotRegular("a device"))
        ));
    }
}
