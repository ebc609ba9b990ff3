//! File helpers: atomic replacement, so that a reader (or a crash) never
//! sees half a file.
//!
//! The temporary file comes from `tempfile`: a random name opened with
//! `O_EXCL` beside the target, so two writers of the same path (two
//! processes, or two threads of one) never share a temporary, and the last
//! rename wins with a whole file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

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
    file.as_file().sync_all()?;
    Ok(file)
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    temp_beside(path, bytes)?
        .persist(path)
        .map(drop)
        .map_err(|e| e.error)
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
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_atomic(&path, b"first version, longer").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
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
}
