//! Unit tests of the FileWatcher's pure parts: which names are task files,
//! which events say a file is complete, and names that never overwrite.

use super::*;

#[test]
fn only_json_files_that_are_not_temporary() {
    for good in ["a.json", "tareas.JSON", "x.y.json"] {
        assert!(is_task_file(Path::new(good)), "{good}");
    }
    for bad in [".a.json", "a.json.part", "a.json.tmp", "a.txt", "json", "a.json~"] {
        assert!(!is_task_file(Path::new(bad)), "{bad}");
    }
}

#[test]
fn a_rename_into_the_folder_or_a_close_after_write_says_complete() {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
    let event = |kind, paths: &[&str]| {
        let mut e = notify::Event::new(kind);
        e.paths = paths.iter().map(PathBuf::from).collect();
        e
    };
    let renamed_in = event(
        EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        &["/q/a.json"],
    );
    assert_eq!(complete_paths(&renamed_in), [true]);
    let within = event(
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
        &["/q/.a.json.tmp", "/q/a.json"],
    );
    assert_eq!(complete_paths(&within), [false, true]);
    let closed = event(
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        &["/q/a.json"],
    );
    assert_eq!(complete_paths(&closed), [true]);
    for still_open in [
        EventKind::Create(CreateKind::File),
        EventKind::Modify(ModifyKind::Any),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)),
    ] {
        assert_eq!(complete_paths(&event(still_open, &["/q/a.json"])), [false]);
    }
}

#[test]
fn unique_names_do_not_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let a = unique(dir.path(), "f.json");
    fs::write(&a, "x").unwrap();
    let b = unique(dir.path(), "f.json");
    assert_eq!(b.file_name().unwrap(), "f_1.json");
}

/// A read that keeps making progress is waited for past the deadline; one
/// that stops is given up one deadline after its last step.
#[test]
fn a_read_is_given_up_only_when_it_stops_making_progress() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let deadline = Duration::from_millis(400);
    actix_rt::System::new().block_on(async move {
        // steps every 10 ms for 1.4 s (three and a half deadlines), then
        // answers
        let (tx, rx) = tokio::sync::oneshot::channel();
        let progress = Arc::new(AtomicU64::new(0));
        let stepping = Arc::clone(&progress);
        std::thread::spawn(move || {
            for _ in 0..140 {
                std::thread::sleep(Duration::from_millis(10));
                stepping.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.send(7);
        });
        let answer = wait_while_progressing(rx, progress, deadline).await;
        assert!(matches!(answer, Ok(Ok(7))), "a read still stepping was given up");

        // one step, then nothing: given up, well before it would answer
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let progress = Arc::new(AtomicU64::new(1));
        let started = std::time::Instant::now();
        let answer = wait_while_progressing(rx, progress, deadline).await;
        assert!(answer.is_err(), "a read that made no progress was waited for");
        assert!(started.elapsed() >= deadline);
        drop(tx);
    });
}
