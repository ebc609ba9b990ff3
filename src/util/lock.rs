//! One process per folder: an OS file lock (`flock` on Unix, `LockFileEx`
//! on Windows, both through `File::try_lock`) held for the life of the
//! process. The kernel drops it when the process ends, even by SIGKILL or
//! `taskkill /F`, so a crash never leaves a stale lock behind the way a pid
//! file would. The lock names its holder (pid, address) so that a second
//! process can say who is in the way: in the lock file itself on Unix; on
//! Windows, whose lock also bars others from reading the file, in
//! `NAME.holder` beside it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is locked by another process ({holder})", .path.display())]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// A held lock; released when dropped or when the process ends.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock at `path` (created, with its folder, if missing)
    /// without waiting; records this process as its holder.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                if cfg!(windows) {
                    text = std::fs::read_to_string(holder_path(path)).unwrap_or_default();
                } else {
                    let _ = file.read_to_string(&mut text);
                }
                let holder = match text.trim() {
                    "" => "it is starting up".to_string(),
                    t => t.to_string(),
                };
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut lock = Self {
            file,
            path: path.to_path_buf(),
        };
        lock.record(&format!("pid {}", std::process::id())).map_err(io)?;
        Ok(lock)
    }

    /// Replaces what the lock file says about its holder (for example
    /// `pid 4242, http://127.0.0.1:5000` once the address is known).
    pub fn record(&mut self, holder: &str) -> std::io::Result<()> {
        if cfg!(windows) {
            return crate::util::fs::write_atomic(&holder_path(&self.path), format!("{holder}\n").as_bytes());
        }
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(holder.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where Windows keeps the holder's description: `NAME.holder` beside the
/// lock file (a stale one is harmless: it is read only while the lock is
/// held, and its holder rewrites it first).
fn holder_path(lock: &Path) -> PathBuf {
    let mut name = lock.as_os_str().to_os_string();
    name.push(".holder");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("orquesta.lock");
        let mut first = InstanceLock::acquire(&path).unwrap();
        first.record("pid 1, http://127.0.0.1:5000").unwrap();
        // a lock is per open file: a second open in this process conflicts
        // just as another process's would
        match InstanceLock::acquire(&path) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, "pid 1, http://127.0.0.1:5000"),
            other => panic!("expected Held, got {other:?}"),
        }
        let message = InstanceLock::acquire(&path).unwrap_err().to_string();
        assert!(
            message.contains("orquesta.lock is locked by another process (pid 1"),
            "{message}"
        );
        drop(first);
        let again = InstanceLock::acquire(&path).unwrap();
        let holder_file = if cfg!(windows) {
            holder_path(again.path())
        } else {
            again.path().to_path_buf()
        };
        assert_eq!(
            std::fs::read_to_string(holder_file).unwrap(),
            format!("pid {}\n", std::process::id())
        );
    }
}
