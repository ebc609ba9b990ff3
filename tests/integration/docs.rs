//! The user's pages hold together: every relative link in README.md,
//! docs/*.md, bench/README.md and deploy/README.md leads to a file that
//! exists, every `#anchor` names a heading of its page (GitHub's slugs),
//! and every `orquesta …` command shown in a code block parses with the
//! real command-line parser (`orquesta::cli::Cli`). No process is started.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use clap::Parser;
use orquesta::cli::Cli;

/// One markdown page: its path relative to the repository, and its text.
struct Page {
    path: PathBuf,
    text: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every docs/*.md, bench/README.md and deploy/README.md.
fn pages(root: &Path) -> Vec<Page> {
    let mut paths = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().unwrap()))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths.push("bench/README.md".into());
    paths.push("deploy/README.md".into());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            Page { path, text }
        })
        .collect()
}

/// A line of a page outside code blocks, or inside one (with its language).
enum Line<'a> {
    Prose(&'a str),
    Code { lang: &'a str, text: &'a str },
}

/// The page's lines, each with its 1-based number, told apart by fences
/// (```lang or ~~~lang).
fn lines(text: &str) -> Vec<(usize, Line<'_>)> {
    let mut out = Vec::new();
    let mut fence: Option<(&str, &str)> = None; // (marker, lang)
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            None => {
                if let Some(marker) = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m)) {
                    fence = Some((marker, trimmed[3..].trim()));
                } else {
                    out.push((i + 1, Line::Prose(line)));
                }
            }
            Some((marker, lang)) => {
                if trimmed.starts_with(marker) && trimmed[3..].trim().is_empty() {
                    fence = None;
                } else {
                    out.push((i + 1, Line::Code { lang, text: line }));
                }
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase; letters, digits, `_` and `-`
/// kept, each space a `-`, everything else dropped; link text for a link.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // [text](url) reads as its text
    while let Some(open) = rest.find('[') {
        let mid = rest[open..].find("](").map(|m| open + m);
        match mid.and_then(|mid| rest[mid..].find(')').map(|c| (mid, mid + c))) {
            Some((mid, close)) => {
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..mid]);
                rest = &rest[close + 1..];
            }
            None => break,
        }
    }
    text.push_str(rest);
    let mut slug = String::new();
    for c in text.trim().chars() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            slug.extend(c.to_lowercase());
        } else if c == ' ' {
            slug.push('-');
        }
    }
    slug
}

/// Every anchor of a page: its headings' slugs, a repeated one suffixed
/// `-1`, `-2`, … as GitHub does.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, line) in lines(text) {
        let Line::Prose(line) = line else { continue };
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links (and images) of a prose line, code
/// spans left out: `[text](target)`.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    // drop `code spans`: a link inside one is not a link
    let mut plain = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            plain.push_str(part);
        }
    }
    let mut rest = plain.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(close) = after.find(')') else { break };
        let target = after[..close].split_whitespace().next().unwrap_or("");
        out.push(target.to_string());
        rest = &after[close..];
    }
    out
}

/// `a/./b/../c` → `a/c`, without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every broken relative link or anchor of these pages, as
/// `page:line: what is wrong`.
fn broken_links(root: &Path, pages: &[Page]) -> Vec<String> {
    let mut anchors_of: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut anchors_for = |path: &Path| -> Option<Vec<String>> {
        if let Some(a) = anchors_of.get(path) {
            return Some(a.clone());
        }
        let text = std::fs::read_to_string(root.join(path)).ok()?;
        let a = anchors(&text);
        anchors_of.insert(path.to_path_buf(), a.clone());
        Some(a)
    };
    let mut problems = Vec::new();
    for page in pages {
        let dir = page.path.parent().unwrap_or(Path::new(""));
        for (number, line) in lines(&page.text) {
            let Line::Prose(line) = line else { continue };
            for target in link_targets(line) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let path = if file.is_empty() {
                    page.path.clone()
                } else {
                    normalize(&dir.join(file))
                };
                let at = format!("{}:{number}", page.path.display());
                if !root.join(&path).exists() {
                    problems.push(format!(
                        "{at}: the link ({target}) expects the file {}, found none",
                        path.display()
                    ));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if path.extension().is_none_or(|x| x != "md") {
                    problems.push(format!(
                        "{at}: the link ({target}) has an anchor but leads to no markdown page"
                    ));
                    continue;
                }
                let known = anchors_for(&path).unwrap_or_default();
                if !known.iter().any(|a| a == anchor) {
                    problems.push(format!(
                        "{at}: the link ({target}) expects a heading #{anchor} in {}, found only: {}",
                        path.display(),
                        known.join(", ")
                    ));
                }
            }
        }
    }
    problems
}

/// Splits a command line as a POSIX shell would split words: quotes, `\`
/// escapes, `$(…)` kept whole; unquoted `|`, `;`, `&&`, `||` end a
/// command, an unquoted `#` at a word's start ends the line. Returns the
/// commands, each a list of words.
fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, commands: &mut Vec<Vec<String>>| {
        if *in_word {
            commands.last_mut().unwrap().push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                word.push('$');
                let mut depth = 0;
                for q in chars.by_ref() {
                    word.push(q);
                    match q {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '#' if !in_word => break,
            '|' | ';' | '&' => {
                end_word(&mut word, &mut in_word, &mut commands);
                if matches!(chars.peek(), Some('|') | Some('&')) {
                    chars.next();
                }
                commands.push(Vec::new());
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut commands),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

/// The arguments after `orquesta` if these words run it (directly, as
/// `…/orquesta`, or as `cargo run --release -- ARGS`), after any
/// `VAR=value` prefix; redirections dropped. None for any other command.
fn orquesta_args(words: &[String]) -> Option<Vec<String>> {
    let mut words = words.iter().skip_while(|w| {
        w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
    });
    let first = words.next()?;
    let rest: Vec<&String> = if first == "orquesta" || first.ends_with("/orquesta") {
        words.collect()
    } else if first == "cargo" {
        let rest: Vec<&String> = words.collect();
        if rest.first().map(|w| w.as_str()) != Some("run") {
            return None;
        }
        let dashes = rest.iter().position(|w| *w == "--")?;
        rest[dashes + 1..].to_vec()
    } else {
        return None;
    };
    let mut args = Vec::new();
    let mut rest = rest.into_iter();
    while let Some(w) = rest.next() {
        let redirect = w.trim_start_matches(|c: char| c.is_ascii_digit());
        if redirect.starts_with('>') || redirect.starts_with('<') {
            if redirect.trim_start_matches(['>', '<', '&']).is_empty() {
                rest.next(); // the file after a separate `>`
            }
            continue;
        }
        args.push(w.clone());
    }
    Some(args)
}

/// Every `orquesta …` command in a code block of these pages, with where
/// it stands: (`page:line`, the arguments after `orquesta`). In a `text`
/// or `console` block only lines with a `$ ` prompt are commands (the
/// rest is output); elsewhere a `$ ` prompt is dropped. A line ending in
/// `\` goes on on the next.
fn shown_commands(pages: &[Page]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for page in pages {
        let mut pending: Option<(usize, String)> = None;
        for (number, line) in lines(&page.text) {
            let Line::Code { lang, text } = line else {
                pending = None;
                continue;
            };
            if !["", "bash", "sh", "shell", "console", "text"].contains(&lang) {
                continue;
            }
            let (start, mut joined) = match pending.take() {
                Some((start, before)) => (start, before + " " + text.trim()),
                None => {
                    let t = text.trim();
                    let command = match t.strip_prefix("$ ") {
                        Some(c) => c,
                        None if lang == "text" || lang == "console" => continue,
                        None => t,
                    };
                    (number, command.to_string())
                }
            };
            if joined.ends_with('\\') {
                joined.pop();
                pending = Some((start, joined));
                continue;
            }
            for words in shell_commands(&joined) {
                if let Some(args) = orquesta_args(&words) {
                    out.push((format!("{}:{start}", page.path.display()), args));
                }
            }
        }
    }
    out
}

/// What the real parser says of each command: `page:line: problem`.
fn unparsable(commands: &[(String, Vec<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (at, args) in commands {
        let argv = std::iter::once("orquesta".to_string()).chain(args.iter().cloned());
        if let Err(e) = Cli::try_parse_from(argv) {
            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
            if !matches!(e.kind(), DisplayHelp | DisplayVersion) {
                let first = e.to_string().lines().next().unwrap_or("").to_string();
                problems.push(format!(
                    "{at}: `orquesta {}` does not parse: {first}",
                    args.join(" ")
                ));
            }
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_of_the_docs_resolves() {
    let pages = pages(repo());
    assert!(
        pages.len() >= 10,
        "expected README.md and the docs/ pages, found {}",
        pages.len()
    );
    let problems = broken_links(repo(), &pages);
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

#[test]
fn every_orquesta_command_shown_in_the_docs_parses() {
    let pages = pages(repo());
    let commands = shown_commands(&pages);
    // the pages show dozens; a handful would mean the scan went wrong
    assert!(
        commands.len() > 50,
        "expected the docs' commands, found {}",
        commands.len()
    );
    let problems = unparsable(&commands);
    assert!(
        problems.is_empty(),
        "commands that do not parse:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_readme_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let first_block = readme.split("```").nth(1).expect("README.md has a code block");
    let commands: Vec<&str> = first_block
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        commands.len() == 2
            && commands[0].starts_with("cargo run --release -- up")
            && commands[1].starts_with("cargo test --release"),
        "expected README.md's first code block to be `cargo run --release -- up` and `cargo test --release`, found {commands:?}"
    );
    let lines = readme.lines().count();
    assert!(
        lines <= 220,
        "expected README.md to stay short (about 200 lines), found {lines}"
    );
}

/// The checks can fail: a page set with a broken link, a wrong anchor and
/// a command that does not parse is caught on each.
#[test]
fn the_checks_catch_a_broken_link_an_unknown_anchor_and_a_bad_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    let a = "# Page A\n\n## Running one file: `orquesta run FILE`\n\n\
             [ok](b.md#second-part) [ok](#running-one-file-orquesta-run-file) [ok](../README.md)\n\
             [gone](missing.md) [bad anchor](b.md#no-such-part) `[in code](nowhere.md)`\n\n\
             ```bash\norquesta sim --particles 100 --steps 500 --seed 123\n\
             $ orquesta up --verbose   # a comment\n\
             WORKER_ID=w1 orquesta worker \\\n  --port 5001 | tee log\n\
             cargo run --release -- sim --particles 10 --steps 1 --seed 1 > out.json\n\
             orquesta serve\norquesta sim --no-such-flag\n```\n\n\
             ```text\norquesta up: output, not a command\n$ orquesta nonsense\n```\n";
    std::fs::write(dir.path().join("docs/a.md"), a).unwrap();
    std::fs::write(dir.path().join("docs/b.md"), "# B\n\n## Second part\n").unwrap();
    std::fs::write(dir.path().join("README.md"), "# R\n").unwrap();
    let pages = vec![Page {
        path: "docs/a.md".into(),
        text: a.to_string(),
    }];
    let links = broken_links(dir.path(), &pages);
    assert_eq!(links.len(), 2, "{links:#?}");
    assert!(
        links[0].contains("docs/a.md:6: the link (missing.md) expects the file docs/missing.md"),
        "{links:#?}"
    );
    assert!(
        links[1].contains("expects a heading #no-such-part in docs/b.md, found only: b, second-part"),
        "{links:#?}"
    );

    let commands = shown_commands(&pages);
    let shown: Vec<String> = commands
        .iter()
        .map(|(at, args)| format!("{at} {}", args.join(" ")))
        .collect();
    assert_eq!(
        shown,
        [
            "docs/a.md:9 sim --particles 100 --steps 500 --seed 123",
            "docs/a.md:10 up --verbose",
            "docs/a.md:11 worker --port 5001",
            "docs/a.md:13 sim --particles 10 --steps 1 --seed 1",
            "docs/a.md:14 serve",
            "docs/a.md:15 sim --no-such-flag",
            "docs/a.md:20 nonsense",
        ]
    );
    let bad = unparsable(&commands);
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(
        bad[0].starts_with("docs/a.md:14: `orquesta serve` does not parse"),
        "{bad:#?}"
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug("Adding workers"), "adding-workers");
    assert_eq!(
        slug("The drop folder (`task_queues/`)"),
        "the-drop-folder-task_queues"
    );
    assert_eq!(
        slug("Despliegue en Máquinas Virtuales"),
        "despliegue-en-máquinas-virtuales"
    );
    assert_eq!(slug("A [link](x.md) — here"), "a-link--here");
    assert_eq!(
        anchors("# A\n## A\n```\n# not a heading\n```\n## A\n"),
        ["a", "a-1", "a-2"]
    );
}
