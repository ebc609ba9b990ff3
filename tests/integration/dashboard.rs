//! The dashboard (`api::dashboard`): the page is open and self-contained,
//! the JSON `GET /` and the event stream keep the token, the stream's
//! first snapshot carries what the page draws; and a real browser
//! (headless Chromium) shows the cluster working while a batch runs.
//!
//! The browser test needs Debian's `chromium` (`apt-get install
//! chromium`). Without it the test prints a loud SKIP line and passes,
//! unless `ORQUESTA_REQUIRE_BROWSER=1` (as `.ci/run` sets), where it
//! fails saying how to install it. It saves a screenshot in its temp
//! folder, and to `$ORQUESTA_SCREENSHOT_TO` when that is set (how
//! `docs/dashboard.png` is made).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const SECRET: &str = "dash-Token-4711";
const BEARER: &str = "Bearer dash-Token-4711";
/// What a browser sends when it navigates.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Opens `GET /events` on a socket and returns the first `count` events'
/// JSON (a stream never ends: ureq's read-to-the-end cannot be used).
fn first_events(addr: &str, auth: Option<&str>, count: usize) -> Result<Vec<Value>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    if !status.contains(" 200 ") {
        let mut rest = String::new();
        let _ = reader.take(4096).read_to_string(&mut rest);
        return Err(format!("{} {rest}", status.trim()));
    }
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    // chunked transfer: the chunk-size lines are skipped, data lines kept
    let mut events = Vec::new();
    let mut line = String::new();
    while events.len() < count {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the stream ended".into());
        }
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            events.push(serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?);
        }
    }
    Ok(events)
}

fn get_with(orch: &Proc, path: &str, headers: &[(&str, &str)]) -> Response {
    http_with("GET", &orch.addr, path, None, headers)
}

/// [`Cluster::wait_workers_up`] for an orchestrator with the token.
fn wait_up_with_token(c: &Cluster) {
    let n = c.workers.len();
    wait_until(Duration::from_secs(20), "workers up", || {
        get_with(c.orch(), "/workers", &[("authorization", BEARER)]).json()["up"] == json!(n)
    });
}

/// `src=`/`href=` attributes that point at another server.
fn external_refs(page: &str) -> Vec<String> {
    let lower = page.to_ascii_lowercase();
    let mut found = Vec::new();
    for attr in ["src=", "href=", "url("] {
        for (i, _) in lower.match_indices(attr) {
            let rest = lower[i + attr.len()..].trim_start_matches(['"', '\'', ' ']);
            if rest.starts_with("http:") || rest.starts_with("https:") || rest.starts_with("//") {
                found.push(page[i..(i + 60).min(page.len())].to_string());
            }
        }
    }
    if lower.contains("http://") || lower.contains("https://") {
        found.push("an http(s):// address".into());
    }
    found
}

#[test]
fn the_page_is_open_self_contained_and_the_data_keeps_the_token() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 2)], &[("ORQUESTA_TOKEN", SECRET)]);
    let orch = c.orch();
    let page = get_with(orch, "/", &[("accept", BROWSER_ACCEPT)]);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let html = page.text();
    assert!(
        html.contains("<svg") || html.contains("drawChart"),
        "the page and its script"
    );
    assert!(external_refs(&html).is_empty(), "{:?}", external_refs(&html));
    assert!(!html.contains(SECRET), "the page holds no secret");
    // curl's `*/*`: the JSON list, which keeps the token
    assert_eq!(get_with(orch, "/", &[("accept", "*/*")]).status, 401);
    let index = get_with(orch, "/", &[("accept", "*/*"), ("authorization", BEARER)]);
    assert_eq!(index.status, 200);
    let endpoints = index.json()["endpoints"].to_string();
    assert!(
        endpoints.contains("GET /events") && endpoints.contains("GET /activity/failures"),
        "{endpoints}"
    );
    // the data: 401 without the token
    let refused = first_events(&orch.addr, None, 1).unwrap_err();
    assert!(
        refused.contains("401") && refused.contains("unauthorized"),
        "{refused}"
    );
    assert!(first_events(&orch.addr, Some("Bearer wrong"), 1)
        .unwrap_err()
        .contains("401"));
    assert_eq!(get_with(orch, "/activity/failures", &[]).status, 401);
    // with it: snapshots, the first at once
    wait_up_with_token(&c);
    let events = first_events(&orch.addr, Some(BEARER), 2).unwrap();
    let s = &events[0];
    assert_eq!((s["seq"].as_u64(), events[1]["seq"].as_u64()), (Some(1), Some(2)));
    for status in ["queued", "running", "completed", "failed", "cancelled"] {
        assert!(s["tasks"]["by_status"][status].is_u64(), "{status}: {s}");
    }
    let w = &s["workers"][0];
    assert_eq!(
        (w["id"].as_str(), w["state"].as_str(), w["capacity"].as_u64()),
        (Some("w1"), Some("up"), Some(2))
    );
    assert!(w["heartbeat_age_seconds"].is_number(), "{w}");
    assert_eq!(s["activity"]["completed"].as_array().map(Vec::len), Some(60));
    assert!(s["activity"]["particle_steps_per_second"].is_number());
    assert!(s["running"].is_array());
    let failures = get_with(orch, "/activity/failures", &[("authorization", BEARER)]);
    assert_eq!(failures.status, 200);
    assert_eq!(failures.json()["failures"], json!([]));
}

#[test]
fn completions_and_failures_reach_the_stream() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 2)], &[("MAX_TASK_RETRIES", "0")]);
    c.wait_workers_up();
    let mut tasks = small_tasks("ok", 4);
    // a test kernel that panics: fails for good (no retry)
    tasks.push(json!({"task_id": "bad", "algorithm": "__panic", "parameters": {}}));
    let file = write_batch(c.dir.path(), "dash_batch.json", tasks);
    let body = std::fs::read_to_string(&file).unwrap();
    let r = c.orch().post("/tasks", &body);
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 4, Duration::from_secs(60));
    c.wait_count("failed", 1, Duration::from_secs(60));
    let s = &first_events(&c.orch().addr, None, 1).unwrap()[0];
    let a = &s["activity"];
    let sum = |k: &str| {
        a[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("completed"), 4, "{a}");
    assert_eq!(sum("failed"), 1, "{a}");
    // 4 tasks of 20 particles × 5 steps
    assert_eq!(sum("particle_steps"), 4 * 20 * 5, "{a}");
    assert_eq!(a["kernels"][0]["count"], 4);
    assert_eq!(a["failures_total"], 1);
    let f = c.orch().get("/activity/failures").json();
    assert_eq!(f["failures"][0]["task_id"], "bad", "{f}");
    assert_eq!(f["failures"][0]["is_final"], true, "{f}");
    assert!(
        f["failures"][0]["reason"].as_str().unwrap().contains("panicked"),
        "{f}"
    );
}

#[test]
fn an_open_stream_ends_cleanly_when_the_orchestrator_stops() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    let addr = c.orch().addr.clone();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before its first snapshot");
        seen.extend_from_slice(&buf[..n]);
    }
    c.orchestrator.as_ref().unwrap().signal(libc::SIGTERM);
    // read to the end: the stream is told to stop and ends its chunked
    // body properly, rather than being cut when the shutdown times out
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the stream did not end: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.ends_with("\r\n0\r\n\r\n"),
        "the last chunk ends the body: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    let code = c
        .orchestrator
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{}", c.orch().log());
}

/// Debian's `chromium`, or another name of it on the PATH.
fn find_browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}
/// Headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: requests on fd 3, answers on fd 4, each
/// message JSON ended by a NUL byte), so the test can read the live page
/// again and again while it updates, and take a screenshot of it. Killed
/// when dropped.
struct Browser {
    child: std::process::Child,
    to: std::fs::File,
    from: std::sync::mpsc::Receiver<Value>,
    next: u64,
    session: String,
    profile: PathBuf,
}

/// A pipe's two ends (read, write) as files.
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

impl Browser {
    /// Starts Chromium on `url` (1366×900) and attaches to its page.
    fn open(browser: &Path, profile: &Path, url: &str) -> Browser {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let (chrome_reads, we_write) = pipe();
        let (we_read, chrome_writes) = pipe();
        let (r, w) = (chrome_reads.as_raw_fd(), chrome_writes.as_raw_fd());
        let mut cmd = Command::new(browser);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-pipe",
            "--window-size=1366,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(profile.join("chromium.log")).unwrap());
        // SAFETY: only fcntl, dup2 and close (async-signal-safe) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // through copies above 10 first: a pipe end may itself be
                // fd 3 or 4, and dup2 onto itself would keep O_CLOEXEC
                let (r, w) = (
                    libc::fcntl(r, libc::F_DUPFD, 10),
                    libc::fcntl(w, libc::F_DUPFD, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(r);
                libc::close(w);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop((chrome_reads, chrome_writes));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(we_read);
            loop {
                let mut msg = Vec::new();
                match reader.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        msg.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: we_write,
            from: rx,
            next: 0,
            session: String::new(),
            profile: profile.to_path_buf(),
        };
        let mut page = Value::Null;
        wait_until(Duration::from_secs(30), "chromium's page", || {
            let targets = b.call("Target.getTargets", json!({}), false);
            page = targets["targetInfos"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["type"] == "page"))
                .map(|t| t["targetId"].clone())
                .unwrap_or(Value::Null);
            !page.is_null()
        });
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
            false,
        );
        b.session = attached["sessionId"].as_str().expect("a session").to_string();
        b
    }

    /// One command; its result (panics on an error, or after 30 s).
    fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if on_page {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes) {
            let log = std::fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default();
            panic!("chromium does not read its pipe ({e}); its output:\n{log}");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method} within 30 s"));
            if v["id"] == json!(id) {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
            true,
        );
        r["result"]["value"].clone()
    }

    /// The page's `<body>` data attributes and its whole HTML.
    fn state(&mut self) -> (Value, String) {
        let data = self.eval("JSON.stringify(document.body.dataset)");
        let data = serde_json::from_str(data.as_str().unwrap_or("{}")).unwrap_or_default();
        let html = self.eval("document.documentElement.outerHTML");
        (data, html.as_str().unwrap_or_default().to_string())
    }

    /// A PNG of the page as it is now.
    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}), true);
        base64_decode(r["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn a_browser_shows_the_cluster_working() {
    let Some(browser) = find_browser() else {
        if std::env::var("ORQUESTA_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!(
                "ORQUESTA_REQUIRE_BROWSER=1 but no chromium on the PATH: install it \
                 (Debian/Ubuntu: `sudo apt-get install chromium`), or unset ORQUESTA_REQUIRE_BROWSER to skip"
            );
        }
        eprintln!(
            "\n########## SKIP a_browser_shows_the_cluster_working: no chromium on the PATH \
             (apt-get install chromium; ORQUESTA_REQUIRE_BROWSER=1 makes this a failure) ##########\n"
        );
        return;
    };
    let c = Cluster::start(
        &[WorkerSpec::new("w1", 2), WorkerSpec::new("w2", 2)],
        &[("ORQUESTA_TOKEN", SECRET)],
    );
    wait_up_with_token(&c);
    let auth = [("authorization", BEARER)];
    // a batch long enough to watch: tasks of about a second and a half
    // each, with steps for the progress bars, in all three priorities;
    // sized from a probe, so that a debug and a release build both fit
    let probe = json!({"task_id": "probe", "algorithm": "python",
        "parameters": {"num_particles": 60, "num_steps": 500, "seed": 1}});
    let r = http_with(
        "POST",
        &c.orch().addr,
        "/tasks",
        Some(probe.to_string().as_bytes()),
        &auth,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let mut probe_seconds = 0.0;
    wait_until(Duration::from_secs(120), "the probe task", || {
        let t = get_with(c.orch(), "/tasks/probe", &auth).json();
        probe_seconds = t["execution_time"].as_f64().unwrap_or(0.0);
        t["status"] == "completed"
    });
    let steps = ((500.0 * 1.5 / probe_seconds.max(1e-4)) as u64).clamp(200, 5_000_000);
    let tasks: Vec<Value> = (0..80)
        .map(|i| {
            let priority = ["high", "medium", "low"][i % 3];
            json!({"task_id": format!("watch{i:02}"), "algorithm": "python", "priority": priority,
                "parameters": {"num_particles": 60, "num_steps": steps, "seed": i}})
        })
        .collect();
    let r = http_with(
        "POST",
        &c.orch().addr,
        "/tasks",
        Some(json!({ "tasks": tasks }).to_string().as_bytes()),
        &auth,
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let profile = tempfile::tempdir().unwrap();
    // the token in the fragment: never sent to the server
    let url = format!("http://{}/#token={SECRET}", c.orch().addr);
    let mut b = Browser::open(&browser, profile.path(), &url);
    let number = |d: &Value, k: &str| d[k].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // live, with a running task's progress (the workers are asked in the
    // background: it shows from the second tick or so) and the chart's bars
    let (mut data, mut html) = (Value::Null, String::new());
    wait_until(
        Duration::from_secs(60),
        "the page live with a running task",
        || {
            (data, html) = b.state();
            data["state"] == "live" && number(&data, "running") > 0 && html.contains("<rect class=\"done\"")
        },
    );
    assert_eq!(
        b.eval("location.hash"),
        json!(""),
        "the token is cleared from the address"
    );
    for worker in ["w1", "w2"] {
        assert!(
            html.contains(&format!("data-worker=\"{worker}\"")),
            "worker {worker}: {html}"
        );
    }
    assert!(html.contains("class=\"badge state-up\""), "workers shown up");
    assert!(
        html.contains("data-status=\"queued\"") && html.contains("data-status=\"completed\""),
        "queue counts"
    );
    assert!(html.contains("data-bins=\"60\""), "the throughput chart");
    assert!(
        html.contains("data-kernel=\"reference\""),
        "the execution-time histogram"
    );
    assert!(html.contains("data-task=\"watch"), "a running task: {html}");
    assert!(html.contains("data-progress=\""), "with its progress");
    // it updates by itself: more snapshots, more tasks done
    let (updates, done) = (number(&data, "updates"), number(&data, "tasksDone"));
    wait_until(
        Duration::from_secs(120),
        "the page to show more tasks done",
        || {
            (data, html) = b.state();
            number(&data, "updates") > updates + 2 && number(&data, "tasksDone") > done
        },
    );
    let png = b.screenshot();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    std::fs::write(c.dir.path().join("dashboard.png"), &png).unwrap();
    if let Some(to) = std::env::var_os("ORQUESTA_SCREENSHOT_TO") {
        std::fs::write(&to, &png).unwrap();
        eprintln!("screenshot saved to {}", PathBuf::from(to).display());
    }
    drop(b);
    assert!(
        !c.orch().log().contains(SECRET),
        "the token never reaches the server's log"
    );
}
