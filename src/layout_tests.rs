//! The import rule of the layout map in `lib.rs`, checked on the source
//! text: the orchestrator's code never names the worker's and the reverse,
//! the shared parts (`protocol`, `http`, `model`, `util`) name neither
//! process nor `cli`, `sim` names nothing of the crate but itself, and only
//! `cli` names `cli`. A path counts when it starts at the crate root
//! (`crate::worker::…`, or a member of a `crate::{…}` group); `super::`
//! cannot leave a folder without passing through `crate`, since every
//! folder here is one side.

use std::fs;
use std::path::{Path, PathBuf};

/// The top-level modules one folder of `src/` may not name.
const RULES: &[(&str, &[&str])] = &[
    ("orchestrator", &["worker", "cli"]),
    ("worker", &["orchestrator", "cli"]),
    ("protocol", &["orchestrator", "worker", "cli"]),
    ("http", &["orchestrator", "worker", "cli"]),
    ("model", &["orchestrator", "worker", "cli", "http", "protocol"]),
    ("util", &["orchestrator", "worker", "cli"]),
    (
        "sim",
        &[
            "orchestrator",
            "worker",
            "cli",
            "http",
            "protocol",
            "model",
            "util",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` comments (doc comments included), so a path
/// named in prose is not an import.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // a `//` inside a string literal ("http://…") keeps its line
            Some(at) if line[..at].matches('"').count() % 2 == 0 => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment after every `crate::` in `code`, groups opened:
/// `crate::a::b` names `a`, `crate::{a::x, b}` names `a` and `b`.
fn crate_roots(code: &str) -> Vec<String> {
    let mut roots = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // first-level members of the group, up to its matching brace
            let (mut depth, mut member, mut fresh) = (0, String::new(), true);
            let mut flush = |member: &mut String| {
                if !member.is_empty() {
                    roots.push(std::mem::take(member));
                }
            };
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        flush(&mut member);
                        fresh = true;
                    }
                    c if depth == 0 && fresh && (c.is_alphanumeric() || c == '_') => member.push(c),
                    c if depth == 0 && fresh && c.is_whitespace() && member.is_empty() => {}
                    _ if depth == 0 && fresh => {
                        flush(&mut member);
                        fresh = false;
                    }
                    _ => {}
                }
            }
            flush(&mut member);
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            roots.push(name);
        }
    }
    roots
}

fn violations(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (folder, banned) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(folder), &mut files);
        assert!(
            !files.is_empty(),
            "src/{folder}/ holds no Rust file: is the layout map current?"
        );
        for file in files {
            let code = without_comments(&fs::read_to_string(&file).unwrap());
            for root in crate_roots(&code) {
                if banned.contains(&root.as_str()) {
                    found.push(format!("{}: {folder} names crate::{root}", file.display()));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn each_side_names_only_itself_and_the_shared_parts() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "the import rule of lib.rs is broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reader_sees_paths_and_groups_but_not_prose() {
    let code = without_comments(
        "use crate::worker::api;\nuse crate::{model::TaskId, orchestrator, sim::{a, b}};\n\
         // crate::cli in a comment\nlet u = \"http://x\"; crate::util::time::now();",
    );
    assert_eq!(
        crate_roots(&code),
        ["worker", "model", "orchestrator", "sim", "util"].map(String::from)
    );
}

#[test]
fn a_crossing_import_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    for (folder, _) in RULES {
        fs::create_dir_all(dir.path().join(folder)).unwrap();
        fs::write(dir.path().join(folder).join("mod.rs"), "use crate::sim::Run;\n").unwrap();
    }
    fs::write(
        dir.path().join("worker/mod.rs"),
        "use crate::{model, orchestrator::store};\n",
    )
    .unwrap();
    fs::write(dir.path().join("sim/mod.rs"), "use crate::util::time;\n").unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].ends_with("sim names crate::util"), "{found:?}");
    assert!(
        found[1].ends_with("worker names crate::orchestrator"),
        "{found:?}"
    );
}
