//! A log file that rotates by size (`LOG_MAX_BYTES`, `LOG_FILES`):
//! `file.log` → `file.log.1` … `file.log.N`, the oldest dropped. No crate
//! for it: the whole job is a stat, a few renames and an append.
//!
//! Several processes may share one file (local workers share
//! `logs/worker_service.log`), so the size is read from the path before
//! each line, not counted in memory, and a file renamed away by another
//! process is reopened. A line is written whole into one file, never split.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An appending log file, rotated before a line would take it past
/// `max_bytes` (0: never rotated), keeping `keep` rotated files.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Mutex<File>,
}

impl RotatingFile {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file: Mutex::new(append(path)?),
        })
    }

    /// `file.log.<n>`.
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Shifts `file.log.i` to `.i+1` (the last dropped), `file.log` to `.1`.
    fn rotate(&self) -> io::Result<()> {
        if self.keep == 0 {
            return remove_if_there(&self.path);
        }
        remove_if_there(&self.numbered(self.keep))?;
        for n in (1..self.keep).rev() {
            rename_if_there(&self.numbered(n), &self.numbered(n + 1))?;
        }
        rename_if_there(&self.path, &self.numbered(1))
    }

    /// Appends whole lines (one or many), rotating before a line would
    /// take the file past `max_bytes`: as many lines as fit go out in one
    /// write, then the file is rotated and the rest follow.
    fn write_lines(&self, lines: &[u8]) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if self.max_bytes == 0 {
            return file.write_all(lines);
        }
        let mut size = match std::fs::metadata(&self.path) {
            Ok(m) if same_file(&m, &file) => m.len(),
            // renamed away (or replaced) by another process sharing it
            _ => {
                *file = append(&self.path)?;
                file.metadata()?.len()
            }
        };
        let mut rest = lines;
        while !rest.is_empty() {
            let fit = fitting(rest, size, self.max_bytes);
            if fit == 0 {
                self.rotate()?;
                *file = append(&self.path)?;
                size = 0;
                continue;
            }
            file.write_all(&rest[..fit])?;
            size += fit as u64;
            rest = &rest[fit..];
        }
        Ok(())
    }
}

/// How many bytes of whole lines at the start of `lines` go into a file
/// of `size` bytes without taking it past `max` (a file's first line
/// always goes, however long); 0: the file must be rotated first.
fn fitting(lines: &[u8], size: u64, max: u64) -> usize {
    let mut take = 0usize;
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let empty = size == 0 && take == 0;
        if !empty && size + (take + line.len()) as u64 > max {
            break;
        }
        take += line.len();
    }
    take
}

/// tracing's writer: each event arrives as one buffered line (or, through
/// [`super::log_writer`], a batch of them).
impl Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_lines(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_there(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn same_file(at_path: &std::fs::Metadata, open: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    open.metadata()
        .is_ok_and(|m| m.ino() == at_path.ino() && m.dev() == at_path.dev())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &File) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rotates_at_the_limit_keeps_n_and_never_splits_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let f = RotatingFile::open(&path, 100, 2).unwrap();
        // 10 lines of 10 bytes fill one file exactly; 35 lines make 4 files
        for i in 0..35 {
            (&f).write_all(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        assert!(!dir.path().join("w.log.3").exists(), "only 2 rotated files kept");
        let (current, one, two) = (
            lines_in(&path),
            lines_in(&dir.path().join("w.log.1")),
            lines_in(&dir.path().join("w.log.2")),
        );
        assert_eq!(current.len(), 5, "the current file holds the last 5 lines");
        assert_eq!(current[0], "line 0030");
        assert_eq!(one.first().map(String::as_str), Some("line 0020"));
        assert_eq!(one.len(), 10);
        assert_eq!(two.first().map(String::as_str), Some("line 0010"));
        for f in ["w.log", "w.log.1", "w.log.2"] {
            assert!(std::fs::metadata(dir.path().join(f)).unwrap().len() <= 100);
        }
    }

    #[test]
    fn a_batch_of_lines_is_split_at_the_limit_between_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let f = RotatingFile::open(&path, 100, 2).unwrap();
        // one batch of 15 lines of 10 bytes: 10 fill a file, 5 start the next
        let batch: String = (0..15).map(|i| format!("line {i:04}\n")).collect();
        (&f).write_all(batch.as_bytes()).unwrap();
        let (current, one) = (lines_in(&path), lines_in(&dir.path().join("w.log.1")));
        assert_eq!(one.len(), 10);
        assert_eq!(current.first().map(String::as_str), Some("line 0010"));
        assert_eq!(current.len(), 5);
        // a line longer than the limit goes alone into a fresh file
        assert_eq!(fitting(b"0123456789\n", 0, 5), 11);
        assert_eq!(fitting(b"0123456789\n", 1, 5), 0);
        assert_eq!(fitting(b"ab\ncd\nef\n", 0, 7), 6);
    }

    #[test]
    fn zero_means_never_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let f = RotatingFile::open(&path, 0, 2).unwrap();
        for _ in 0..100 {
            (&f).write_all(b"0123456789\n").unwrap();
        }
        assert_eq!(lines_in(&path).len(), 100);
        assert!(!dir.path().join("w.log.1").exists());
    }

    #[test]
    fn a_file_renamed_away_by_another_process_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        let a = RotatingFile::open(&path, 1000, 2).unwrap();
        let b = RotatingFile::open(&path, 30, 2).unwrap();
        (&b).write_all(b"0123456789abcdefghij\n").unwrap();
        (&b).write_all(b"0123456789abcdefghij\n").unwrap(); // b rotates
        (&a).write_all(b"from a\n").unwrap();
        assert_eq!(lines_in(&path).last().map(String::as_str), Some("from a"));
    }
}
