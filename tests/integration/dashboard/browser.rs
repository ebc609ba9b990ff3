//! Headless Chromium for the dashboard's browser test: found on the PATH,
//! driven over the DevTools protocol on a pipe, so the test reads the live
//! page as it updates, clicks in it, and takes a screenshot.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{missing_tool, wait_until};

/// Debian's `chromium`, or another name of it on the PATH.
pub fn find_browser() -> Option<PathBuf> {
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
/// Chromium for the browser test `test`, or `None` when it may skip: outside
/// CI a missing browser is skipped, saying so ([`missing_tool`]); under CI,
/// or with the older switch `ORQUESTA_REQUIRE_BROWSER=1`, it fails.
pub fn require_browser(test: &str) -> Option<PathBuf> {
    let found = find_browser();
    if found.is_none() {
        assert!(
            std::env::var("ORQUESTA_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ORQUESTA_REQUIRE_BROWSER=1 but no chromium on the PATH: install it \
             (Debian/Ubuntu: `sudo apt-get install chromium`)"
        );
        missing_tool(
            test,
            "chromium on the PATH (Debian/Ubuntu: apt-get install chromium)",
        );
    }
    found
}

/// Headless Chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: requests on fd 3, answers on fd 4, each
/// message JSON ended by a NUL byte), so the test can read the live page
/// again and again while it updates, and take a screenshot of it. Killed
/// when dropped.
pub struct Browser {
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
    pub fn open(browser: &Path, profile: &Path, url: &str) -> Browser {
        Browser::open_with(browser, profile, url, &[])
    }

    /// [`Browser::open`] with more command-line switches (e.g.
    /// `--host-resolver-rules` to make a name resolve to loopback).
    pub fn open_with(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> Browser {
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
        .args(extra)
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
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
            true,
        );
        r["result"]["value"].clone()
    }

    /// The page's `<body>` data attributes and its whole HTML.
    pub fn state(&mut self) -> (Value, String) {
        let data = self.eval("JSON.stringify(document.body.dataset)");
        let data = serde_json::from_str(data.as_str().unwrap_or("{}")).unwrap_or_default();
        let html = self.eval("document.documentElement.outerHTML");
        (data, html.as_str().unwrap_or_default().to_string())
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&mut self) -> Vec<u8> {
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
