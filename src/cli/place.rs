//! Putting a finished file in place for `gen` and `submit`: written to a
//! temporary beside it ([`crate::util::fs::temp_beside`], a name the
//! FileWatcher ignores), flushed, then renamed into place in one step
//! (without replacing an existing file unless asked), so that the
//! orchestrator never sees half a file. Ctrl-C is held off while the
//! temporary exists ([`hold_interrupts`](crate::util::platform::hold_interrupts)),
//! so an interrupt leaves either the whole file or nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path`. With `replace` an existing file is replaced
/// (temp + rename); without it an existing file is an `AlreadyExists`
/// error and is left untouched (temp + a rename or hard link that never
/// replaces).
pub fn write_new(path: &Path, bytes: &[u8], replace: bool) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let _held = crate::util::platform::hold_interrupts();
    if replace {
        return crate::util::fs::write_atomic(path, bytes);
    }
    if path.exists() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the file exists"));
    }
    let tmp = crate::util::fs::temp_beside(path, bytes)?;
    // rename without replacing (or link, then unlink, where the file
    // system has no such rename); the temporary is removed on failure
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Err(e.error),
        // a file system without hard links: check, then rename
        Err(_) if path.exists() => Err(io::Error::new(io::ErrorKind::AlreadyExists, "the file exists")),
        Err(e) => e.file.persist(path).map(drop).map_err(|e| e.error),
    }
}

/// Writes `bytes` under the first free name of `dir/STEM.json`,
/// `dir/STEM_2.json`, … and returns it.
pub fn write_free_name(dir: &Path, stem: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    for n in 1..=1000u32 {
        let name = if n == 1 {
            format!("{stem}.json")
        } else {
            format!("{stem}_{n}.json")
        };
        let path = dir.join(name);
        match write_new(&path, bytes, false) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{stem}.json to {stem}_1000.json all exist in {}", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fs::names;

    #[test]
    fn never_replaces_unless_asked_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue/a.json");
        write_new(&path, b"one", false).unwrap();
        let e = write_new(&path, b"two", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_new(&path, b"three", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(names(&dir.path().join("queue")), ["a.json"]);
    }

    #[test]
    fn free_names_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_free_name(dir.path(), "tasks_x", b"1").unwrap();
        let b = write_free_name(dir.path(), "tasks_x", b"2").unwrap();
        assert!(a.ends_with("tasks_x.json") && b.ends_with("tasks_x_2.json"));
        assert_eq!(names(dir.path()), ["tasks_x.json", "tasks_x_2.json"]);
    }
}
