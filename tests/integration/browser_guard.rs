//! A web page of another origin, in a real Chromium, can neither drive nor
//! read a cluster that runs without a token (`src/http/browser.rs`): its
//! simple cross-origin requests (`no-cors` POSTs with `text/plain` bodies)
//! change nothing on the orchestrator or a worker, and a name that a
//! rebinding attacker points at 127.0.0.1 is refused, but for `/health`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;

use crate::common::{http_with, sleep_task, wait_until, Cluster, WorkerSpec};
use crate::dashboard::browser::{require_browser, Browser};

/// Serves `page` to every request on a port of its own: the attacker's
/// origin (`http://127.0.0.1:PORT`, another port is another origin).
fn serve_page(page: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut out = &stream;
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
}

#[test]
fn a_page_of_another_origin_cannot_drive_the_cluster() {
    let Some(browser) = require_browser("browser_guard::a_page_of_another_origin_cannot_drive_the_cluster")
    else {
        return;
    };
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    // a task running on w1, for the page to try to cancel on the worker
    let r = http_with(
        "POST",
        &c.orch().addr,
        "/tasks",
        Some(sleep_task("long", 60.0).as_bytes()),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(Duration::from_secs(60), "the task running", || {
        c.status_of("long") == "running"
    });

    let (orch, worker) = (c.orch().addr.clone(), c.workers[0].addr.clone());
    let join = json!({"id": "rogue", "url": "http://127.0.0.1:9", "capacity": 64,
        "algorithms": ["python"], "instance": "x", "version": "0"});
    let tasks = json!({"tasks": [{"task_id": "planted", "algorithm": "python",
        "parameters": {"num_particles": 16, "num_steps": 1, "seed": 1}}]});
    // every request a page can send without a preflight; each awaited, so
    // that "done" means the servers have had them all
    let page = format!(
        r#"<html><body><script>
        const shots = [
          ["http://{orch}/workers/join", {join:?}],
          ["http://{orch}/tasks", {tasks:?}],
          ["http://{orch}/workers/w1/drain", ""],
          ["http://{orch}/tasks/long", "", "DELETE"],
          ["http://{orch}/admin/purge", '{{"before": "2100-01-01"}}'],
          ["http://{worker}/cancel/long", ""],
        ];
        (async () => {{
          let sent = 0;
          for (const [url, body, method] of shots) {{
            try {{
              await fetch(url, {{method: method || "POST", mode: "no-cors",
                headers: {{"Content-Type": "text/plain"}}, body: body || undefined}});
              sent += 1;
            }} catch (e) {{ document.body.dataset.error = String(e); }}
          }}
          document.title = "done " + sent;
        }})();
        </script></body></html>"#,
        join = join.to_string(),
        tasks = tasks.to_string(),
    );
    let attacker = serve_page(page);
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&browser, profile.path(), &format!("http://{attacker}/"));
    let mut title = String::new();
    wait_until(Duration::from_secs(60), "the page's requests", || {
        title = b.eval("document.title").as_str().unwrap_or_default().to_string();
        title.starts_with("done")
    });
    // the DELETE needs a preflight, which fails (no CORS answer): 5 of 6 go out
    assert_eq!(title, "done 5", "{:?}", b.eval("document.body.dataset.error"));

    let workers = c.orch().get("/workers").json();
    let ids: Vec<&str> = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    assert_eq!(ids, ["w1"], "a page joined a worker: {workers}");
    assert_eq!(c.orch().get("/tasks/planted").status, 404, "a page queued a task");
    assert_eq!(c.status_of("long"), "running", "a page stopped a running task");
    let row = crate::common::worker_row(c.orch(), "w1");
    assert_eq!(row["state"], "up", "a page drained w1: {row}");
    assert_eq!(c.orch().get("/tasks").json()["total"], 1, "a page queued a task");
    let current = http_with("GET", &worker, "/current", None, &[]).text();
    assert!(
        current.contains("\"long\""),
        "a page cancelled the task on its worker: {current}"
    );

    // the same requests from a command-line client (no Origin, JSON) pass
    let r = http_with("POST", &orch, "/workers/w1/drain", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let plain = format!(
        "POST /tasks HTTP/1.1\r\nHost: {orch}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{tasks}",
        tasks.to_string().len()
    );
    let mut stream = std::net::TcpStream::connect(&orch).unwrap();
    stream.write_all(plain.as_bytes()).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert_eq!(
        c.orch().get("/tasks/planted").status,
        404,
        "a text/plain body queued a task"
    );
    assert!(answer.contains("Content-Type: application/json"), "{answer}");
}

#[test]
fn a_rebinding_name_reads_nothing_but_health() {
    let Some(browser) = require_browser("browser_guard::a_rebinding_name_reads_nothing_but_health") else {
        return;
    };
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let port = c.orch().addr.rsplit(':').next().unwrap().to_string();
    let profile = tempfile::tempdir().unwrap();
    // what a rebinding attack achieves: the attacker's name resolves to us
    let rules = "--host-resolver-rules=MAP evil.example 127.0.0.1";
    let url = format!("http://evil.example:{port}/stats");
    let mut b = Browser::open_with(&browser, profile.path(), &url, &[rules]);
    let body = |b: &mut Browser| {
        b.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut text = String::new();
    wait_until(
        Duration::from_secs(30),
        "the page under the rebinding name",
        || {
            text = body(&mut b);
            !text.is_empty()
        },
    );
    assert!(
        text.contains("foreign_host") && !text.contains("by_status"),
        "{text}"
    );
    b.eval(&format!("location.href = 'http://evil.example:{port}/health'"));
    wait_until(
        Duration::from_secs(30),
        "/health under the rebinding name",
        || {
            text = body(&mut b);
            text.contains("healthy") || text.contains("status")
        },
    );
    assert!(!text.contains("foreign_host"), "{text}");
    // loopback names still read everything
    let r = http_with("GET", &c.orch().addr, "/stats", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
}
