//! A property test over both HTTP APIs: random methods, paths, query
//! strings, headers and bodies (random bytes, random JSON, task-shaped
//! JSON with extreme values, a few bodies of megabytes) thrown at a live
//! orchestrator and a live worker. Whatever arrives, the answer is never a
//! 5xx (a 503 that says when to come back is allowed: "busy" is an
//! answer), neither process dies, and their memory stays bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

use crate::common::*;

/// One request as the fuzzer made it.
#[derive(Debug, Clone)]
struct Case {
    to_worker: bool,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Each server's routes with the method each answers (and a catch-all).
const ORCHESTRATOR_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/tasks"),
    ("POST", "/tasks"),
    ("POST", "/tasks"),
    ("POST", "/tasks"),
    ("GET", "/tasks/{id}"),
    ("DELETE", "/tasks/{id}"),
    ("POST", "/tasks/{id}/retry"),
    ("GET", "/workers"),
    ("POST", "/workers/join"),
    ("GET", "/workers/{id}"),
    ("POST", "/workers/{id}/drain"),
    ("POST", "/workers/{id}/resume"),
    ("GET", "/stats"),
    ("GET", "/stats/performance"),
    ("GET", "/health"),
    ("GET", "/{id}"),
];

const WORKER_ROUTES: &[(&str, &str)] = &[
    ("POST", "/execute"),
    ("POST", "/execute"),
    ("POST", "/execute"),
    ("POST", "/cancel/{id}"),
    ("GET", "/status"),
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/history"),
    ("GET", "/current"),
    ("POST", "/results/ack"),
    ("GET", "/results/{id}"),
    ("DELETE", "/results/{id}"),
    ("GET", "/{id}"),
];

fn method() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "FROB",
    ])
    .prop_map(str::to_string)
}

/// An id segment: plain, empty-ish, percent-encoded junk, traversal, long.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{1,12}",
        Just("w1".to_string()),
        Just("%00".to_string()),
        Just("..%2F..%2Fetc%2Fpasswd".to_string()),
        Just("%FF%FE".to_string()),
        Just("%20".to_string()),
        (1usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "limit",
        "offset",
        "status",
        "worker",
        "priority",
        "algorithm",
        "file",
        "x",
        "",
    ]);
    let value = prop::sample::select(vec![
        "10",
        "abc",
        "-1",
        "18446744073709551616",
        "99999999999999999999999",
        "1e3",
        "queued",
        "running",
        "bogus",
        "%00",
        "",
    ]);
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        if pairs.is_empty() {
            String::new()
        } else {
            let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("?{}", joined.join("&"))
        }
    })
}

/// A route's method (now and then another one) and its path with a
/// random id and query.
fn request_line(to_worker: bool) -> impl Strategy<Value = (String, String)> {
    let routes = if to_worker {
        WORKER_ROUTES
    } else {
        ORCHESTRATOR_ROUTES
    };
    (
        prop::sample::select(routes.to_vec()),
        prop::option::weighted(0.2, method()),
        id(),
        query(),
    )
        .prop_map(|((m, t), other, id, q)| {
            (
                other.unwrap_or_else(|| m.to_string()),
                format!("{}{q}", t.replace("{id}", &id)),
            )
        })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        prop::sample::select(vec![
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json; charset=latin1",
            ""
        ])
        .prop_map(|v| ("Content-Type".to_string(), v.to_string())),
        "[ -~]{0,64}".prop_map(|v| ("Authorization".to_string(), v)),
        (1usize..6000).prop_map(|n| ("X-Long".to_string(), "v".repeat(n))),
        prop::sample::select(vec!["gzip", "br", "identity", "zstd"])
            .prop_map(|v| ("Accept-Encoding".to_string(), v.to_string())),
        Just(("Expect".to_string(), "100-continue".to_string())),
    ];
    prop::collection::vec(one, 0..4)
}

/// A JSON value of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[^\u{0}]{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A number from the edges: zero, negatives, denormals, huge, strings.
fn extreme() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!(0),
        json!(1),
        json!(10),
        json!(100),
        json!(-1),
        json!(1e-300),
        json!(1e-9),
        json!(1e-7),
        json!(1e10),
        json!(1e300),
        json!(0.5),
        json!(18446744073709551615u64),
        json!("100"),
        json!("NaN"),
        json!(null),
        json!([1, 2]),
    ])
}

/// A small task with up to two parameters from the edges; sometimes
/// wrapped in a task file.
fn task_like() -> impl Strategy<Value = Value> {
    let algorithm = prop::sample::select(vec![
        "python",
        "cython",
        "reference",
        "optimized",
        "__sleep",
        "nope",
        "",
    ]);
    let params = prop::collection::btree_map(
        prop::sample::select(vec![
            "num_particles",
            "num_steps",
            "seed",
            "density",
            "dt",
            "temperature",
            "cutoff",
            "seconds",
            "extra",
        ]),
        extreme(),
        0..3,
    );
    (
        "[a-z0-9]{1,10}",
        algorithm,
        params,
        any::<bool>(),
        prop::option::of(any_json()),
    )
        .prop_map(|(id, algorithm, params, wrap, extra)| {
            // a small valid run, then up to two values from the edges
            let mut base = json!({"num_particles": 100, "num_steps": 10, "seed": 1});
            for (k, v) in params {
                base[k] = v;
            }
            let mut task = json!({"task_id": format!("fz-{id}"), "algorithm": algorithm, "parameters": base});
            if let Some(extra) = extra {
                task["extra"] = extra;
            }
            if wrap {
                json!({"tasks": [task]})
            } else {
                task
            }
        })
}

/// A task whose parameters carry megabytes of numbers.
fn huge() -> impl Strategy<Value = Vec<u8>> {
    (1usize..20).prop_map(|mb| {
        let mut body = br#"{"task_id": "fz-huge", "algorithm": "python", "parameters": {"num_particles": 10, "num_steps": 1, "seed": 1, "blob": ["#.to_vec();
        while body.len() < mb << 20 {
            body.extend_from_slice(b"1234567.125,");
        }
        body.extend_from_slice(b"0]}}");
        body
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        4 => prop::collection::vec(any::<u8>(), 0..2000),
        6 => any_json().prop_map(|v| v.to_string().into_bytes()),
        8 => task_like().prop_map(|v| v.to_string().into_bytes()),
        1 => huge(),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    any::<bool>().prop_flat_map(|to_worker| {
        (request_line(to_worker), headers(), body()).prop_map(move |((method, path), headers, body)| Case {
            to_worker,
            method,
            path,
            headers,
            body,
        })
    })
}

/// Sends `case` as raw bytes (`Connection: close`, an exact
/// `Content-Length`) and returns the status and whether a `Retry-After`
/// came with it; None when the server closed without answering (a request
/// it could not parse). A server that stays silent fails the test.
fn send(addr: &str, case: &Case) -> Result<Option<(u16, bool)>, String> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
        case.method, case.path
    );
    for (k, v) in &case.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", case.body.len()));
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Err(format!("{addr} refuses connections: the server died"));
    };
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    // a server may answer (413) and close before the body is all sent
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&case.body));
    let answer = read_answer(&mut stream, case.method == "HEAD").map_err(|e| format!("no answer: {e}"))?;
    let head = String::from_utf8_lossy(&answer).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|h| h.get(..3))
        .and_then(|c| c.parse().ok());
    let retry_after = head.to_ascii_lowercase().contains("\r\nretry-after:");
    Ok(status.map(|s| (s, retry_after)))
}

/// The head of the final answer (interim `100 Continue` heads skipped),
/// its body read as far as `Content-Length` says; empty if the server
/// closed without answering. Not waiting for the close keeps each case
/// quick.
fn read_answer(stream: &mut TcpStream, head_only: bool) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(Vec::new()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
            continue;
        };
        let head = buf[..end + 4].to_vec();
        if head.starts_with(b"HTTP/1.1 100") {
            buf.drain(..end + 4);
            continue;
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let length: usize = text
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .filter(|_| !head_only)
            .unwrap_or(0);
        let mut have = buf.len() - head.len();
        while have < length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => have += n,
            }
        }
        return Ok(head);
    }
}

/// Requests that once killed a worker or took gigabytes: grids of
/// `cells²` entries, a blown-up system, a 20 MB body of numbers.
fn known_hostile() -> Vec<Case> {
    let post = |to_worker: bool, path: &str, body: Vec<u8>| Case {
        to_worker,
        method: "POST".into(),
        path: path.into(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body,
    };
    let mut out = Vec::new();
    for (i, params) in [
        json!({"num_particles": 100, "num_steps": 10, "seed": 1, "density": 1e-9}),
        json!({"num_particles": 100, "num_steps": 10, "seed": 1, "density": 1e-300}),
        json!({"num_particles": 100, "num_steps": 10, "seed": 1, "dt": 1e10}),
        json!({"num_particles": 100, "num_steps": 10, "seed": 1, "temperature": 1e300}),
    ]
    .into_iter()
    .enumerate()
    {
        let task = json!({"task_id": format!("known-{i}"), "algorithm": "cython", "parameters": params});
        out.push(post(true, "/execute", task.to_string().into_bytes()));
        out.push(post(false, "/tasks", task.to_string().into_bytes()));
    }
    let mut huge = br#"{"task_id": "known-huge", "algorithm": "python", "parameters": {"num_particles": 10, "num_steps": 1, "seed": 1, "blob": ["#.to_vec();
    while huge.len() < 20 << 20 {
        huge.extend_from_slice(b"1234567.125,");
    }
    huge.extend_from_slice(b"0]}}");
    out.push(post(false, "/tasks", huge.clone()));
    out.push(post(true, "/results/ack", huge));
    out
}

#[test]
fn random_requests_never_get_a_5xx_nor_hurt_either_server() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let orch = c.orch().addr.clone();
    let worker = c.workers[0].addr.clone();
    let cases: u32 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // a dead server fails every smaller case too: report the first
        max_shrink_iters: 0,
        ..Config::default()
    });
    let by_status = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    // the requests issue 11 found harmful go first, every run
    for case in known_hostile() {
        let addr = if case.to_worker { &worker } else { &orch };
        match send(addr, &case) {
            Ok(Some((status, _))) => assert!(status < 500, "{} {} answered {status}", case.method, case.path),
            Ok(None) => {}
            Err(e) => panic!("{} {}: {e}", case.method, case.path),
        }
    }
    let outcome = runner.run(&case(), |case| {
        let addr = if case.to_worker { &worker } else { &orch };
        let answer = send(addr, &case).map_err(|e| {
            TestCaseError::fail(format!(
                "{} {} ({} bytes): {e}",
                case.method,
                case.path,
                case.body.len()
            ))
        })?;
        if let Some((status, retry_after)) = answer {
            *by_status.lock().unwrap().entry(status).or_default() += 1;
            let busy = status == 503 && retry_after;
            prop_assert!(
                status < 500 || busy,
                "{} {} answered {status}",
                case.method,
                case.path
            );
        }
        Ok(())
    });
    println!("fuzz answers by status: {:?}", by_status.lock().unwrap());
    if let Err(e) = outcome {
        panic!("{e}");
    }
    assert!(
        c.orchestrator
            .as_mut()
            .unwrap()
            .child
            .try_wait()
            .unwrap()
            .is_none(),
        "the orchestrator died"
    );
    assert!(
        c.workers[0].child.try_wait().unwrap().is_none(),
        "the worker died"
    );
    assert_eq!(c.orch().get("/health").status, 200);
    assert_eq!(c.workers[0].get("/health").status, 200);
    // bodies of up to 20 MB came in; neither process may keep a multiple
    for (name, pid) in [("orchestrator", c.orch().pid()), ("worker", c.workers[0].pid())] {
        let peak = peak_rss_bytes(pid) >> 20;
        assert!(peak < 600, "the {name} peaked at {peak} MiB");
    }
}

#[test]
fn with_a_token_random_requests_without_it_get_401_everywhere_but_health() {
    let token = "fuzz-secret-7f3a";
    let c = Cluster::start(&[], &[("ORQUESTA_TOKEN", token)]);
    let orch = c.orch().addr.clone();
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    let outcome = runner.run(&case(), |mut case| {
        case.to_worker = false;
        // a random Authorization header is never this one
        let health = case.method == "GET" && case.path.split('?').next() == Some("/health");
        let answer = send(&orch, &case).map_err(TestCaseError::fail)?;
        if let Some((status, _)) = answer {
            prop_assert!(status < 500, "{} {} answered {status}", case.method, case.path);
            prop_assert!(
                health || status == 401,
                "{} {} answered {status} without the token",
                case.method,
                case.path
            );
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let log = c.orch().log();
    assert!(!log.contains(token), "the token shows in the log");
}

// ---- issue 22: pages, forged results, joins ----

/// A runner whose cases are the same on every run: seeded with
/// `FUZZ_SEED` (a number) if set, else a fixed seed; no shrinking (each
/// case is reported as drawn).
fn seeded(cases: u32) -> TestRunner {
    use proptest::test_runner::{RngAlgorithm, TestRng};
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(22);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 0,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// A request as a browser page (or a rebinding name, or curl) may send it.
#[derive(Debug, Clone)]
struct PageCase {
    to_worker: bool,
    method: String,
    path: String,
    /// `{port}` stands for the server's port.
    host: String,
    /// `{host}` stands for the `Host` sent.
    origin: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Every route of each server that changes state, and a few that read.
const ORCHESTRATOR_WRITES: &[(&str, &str)] = &[
    ("POST", "/tasks"),
    ("DELETE", "/tasks/{id}"),
    ("POST", "/tasks/{id}/retry"),
    ("POST", "/tasks/{id}/checkpoint"),
    ("POST", "/workers/join"),
    ("POST", "/workers/{id}/drain"),
    ("POST", "/workers/{id}/resume"),
    ("DELETE", "/workers/{id}"),
    ("POST", "/admin/purge"),
    ("GET", "/stats"),
    ("GET", "/tasks/{id}"),
    ("GET", "/health"),
    ("GET", "/"),
];

const WORKER_WRITES: &[(&str, &str)] = &[
    ("POST", "/execute"),
    ("POST", "/execute/batch"),
    ("POST", "/cancel/{id}"),
    ("POST", "/results/ack"),
    ("DELETE", "/results/{id}"),
    ("GET", "/status"),
    ("GET", "/current"),
    ("GET", "/health"),
];

fn page_case() -> impl Strategy<Value = PageCase> {
    let host = prop::sample::select(vec![
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST:{port}",
        "localhost.:{port}",
        "a.localhost:{port}",
        "[::1]:{port}",
        "127.8.9.10:{port}",
        "evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "localhost.evil.example:{port}",
        "[::ffff:127.0.0.1]:{port}",
        "10.0.0.7:{port}",
        "evil.example",
    ]);
    let origin = prop::option::weighted(
        0.7,
        prop::sample::select(vec![
            "http://{host}",
            "https://{host}",
            "http://evil.example",
            "null",
            "http://127.0.0.1:1",
            "http://localhost:{port}",
            "file://",
        ]),
    );
    let content_type = prop::option::weighted(
        0.85,
        prop::sample::select(vec![
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/octet-stream",
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/json",
        ]),
    );
    let body = prop::sample::select(vec!["", "", "{}", "[]", "{\"x\": 1}", "task_ids=a"]);
    (
        any::<bool>(),
        prop::sample::select(ORCHESTRATOR_WRITES.to_vec()),
        prop::sample::select(WORKER_WRITES.to_vec()),
        prop::option::weighted(0.1, prop::sample::select(vec!["HEAD", "OPTIONS", "PUT"])),
        host,
        origin,
        content_type,
        body,
    )
        .prop_map(|(to_worker, o, w, other, host, origin, content_type, body)| {
            let (method, path) = if to_worker { w } else { o };
            PageCase {
                to_worker,
                method: other.unwrap_or(method).to_string(),
                path: path.replace("{id}", "fz1"),
                host: host.to_string(),
                origin: origin.map(str::to_string),
                content_type: content_type.map(str::to_string),
                body: body.as_bytes().to_vec(),
            }
        })
}

/// What docs/security.md says of a request: the code it is refused with,
/// or None. `loopback_only`: the server has no token.
fn page_verdict(
    loopback_only: bool,
    method: &str,
    path: &str,
    host: &str,
    origin: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<&'static str> {
    if method == "GET" && path == "/health" {
        return None;
    }
    // localhost, a name under .localhost, 127.x.x.x or [::1], as written
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.octets()[0] == 127);
    if loopback_only && !loopback {
        return Some("foreign_host");
    }
    if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return None;
    }
    if let Some(origin) = origin {
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Some("cross_origin");
        }
    }
    let essence = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    let typed = essence == "application/json"
        || essence == "application/octet-stream"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if !body.is_empty() && !typed {
        return Some("unsupported_media_type");
    }
    None
}

/// Throws `cases` page-like requests at `targets` (orchestrator, then
/// worker if any) and checks each answer against [`page_verdict`].
fn pages_against(targets: &[String], loopback_only: bool, token: Option<&str>, cases: u32) {
    let refused = std::sync::Mutex::new(std::collections::BTreeMap::<&str, u32>::new());
    let auth = token.map(|t| format!("Bearer {t}"));
    let outcome = seeded(cases).run(&page_case(), |case| {
        let addr = &targets[usize::from(case.to_worker && targets.len() > 1)];
        let port = addr.rsplit(':').next().unwrap();
        let host = case.host.replace("{port}", port);
        let origin = case
            .origin
            .as_ref()
            .map(|o| o.replace("{host}", &host).replace("{port}", port));
        let mut headers = vec![("Host", host.as_str())];
        if let Some(o) = &origin {
            headers.push(("Origin", o));
        }
        if let Some(ct) = &case.content_type {
            headers.push(("Content-Type", ct));
        }
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let expected = page_verdict(
            loopback_only,
            &case.method,
            &case.path,
            &host,
            origin.as_deref(),
            case.content_type.as_deref(),
            &case.body,
        );
        let Some((status, answer)) = raw_request(addr, &case.method, &case.path, &headers, &case.body) else {
            return Err(TestCaseError::fail(format!("{case:?}: no answer")));
        };
        let said = format!(
            "{} {} with {headers:?}: {status} {answer}",
            case.method, case.path
        );
        prop_assert!(status < 500, "{}", said);
        match expected {
            Some(code) => {
                let want = if code == "unsupported_media_type" {
                    415
                } else {
                    403
                };
                prop_assert_eq!(status, want, "{}", said);
                // a HEAD answer has no body to name the code in
                prop_assert!(case.method == "HEAD" || answer.contains(code), "{}", said);
                *refused.lock().unwrap().entry(code).or_default() += 1;
            }
            None => {
                let guard_refused = (status == 403
                    && (answer.contains("foreign_host") || answer.contains("cross_origin")))
                    || (status == 415 && !case.body.is_empty());
                prop_assert!(
                    !guard_refused,
                    "refused, yet allowed by docs/security.md: {}",
                    said
                );
                *refused.lock().unwrap().entry("allowed").or_default() += 1;
            }
        }
        Ok(())
    });
    println!("page-like requests by verdict: {:?}", refused.lock().unwrap());
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let by = refused.into_inner().unwrap();
    for code in ["cross_origin", "unsupported_media_type", "allowed"] {
        assert!(by.get(code).is_some_and(|n| *n > 0), "no case was {code}: {by:?}");
    }
}

#[test]
fn page_requests_are_refused_on_every_route_of_both_servers_unless_same_origin_loopback_and_json() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let targets = [c.orch().addr.clone(), c.workers[0].addr.clone()];
    pages_against(&targets, true, None, 2000);
    assert_eq!(c.orch().get("/health").status, 200);
    assert_eq!(c.workers[0].get("/health").status, 200);
}

#[test]
fn with_a_token_any_host_is_answered_but_pages_are_still_refused() {
    let token = "fuzz-secret-22";
    let c = Cluster::start(&[], &[("ORQUESTA_TOKEN", token)]);
    pages_against(&[c.orch().addr.clone()], false, Some(token), 600);
}

/// How a worker's answer to one task is forged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Forgery {
    /// Counts and energies as a real run reports them.
    Honest,
    /// As honest, with the counts written `16.0`.
    HonestFloats,
    WrongParticles,
    WrongSteps,
    NoCount,
    NegativeKinetic,
    TotalsDoNotAddUp,
    /// An energy written `1e999`, `NaN` or `-Infinity`: no JSON number.
    NonFiniteText,
    EnergyAsText,
    ThermoPastTheEnd,
    MetricsNotAnObject,
    /// Output of 300 kB, over the test's `MAX_RESULT_BYTES` of 200 kB.
    Oversize,
}

impl Forgery {
    /// The part of the attempt's error that says what was wrong; None for
    /// an honest answer (completed).
    fn says(self) -> Option<&'static str> {
        match self {
            Forgery::Honest | Forgery::HonestFloats => None,
            Forgery::WrongParticles => Some("metrics.particles_processed"),
            Forgery::WrongSteps => Some("metrics.steps_completed"),
            Forgery::NoCount => Some("no metrics."),
            Forgery::NegativeKinetic => Some("expected a number ≥ 0"),
            Forgery::TotalsDoNotAddUp => Some("metrics.total_energy_"),
            Forgery::NonFiniteText => Some(""),
            Forgery::EnergyAsText => Some("expected a finite number"),
            Forgery::ThermoPastTheEnd => Some("metrics.thermo row"),
            Forgery::MetricsNotAnObject => Some("metrics that are not an object"),
            Forgery::Oversize => Some("more than MAX_RESULT_BYTES = 200000"),
        }
    }
}

/// One task and the answer its worker forges: particles, steps, energies.
#[derive(Debug, Clone)]
struct ResultCase {
    n: u64,
    steps: u64,
    forgery: Forgery,
    potential: f64,
    kinetic: f64,
    noise: u64,
}

fn result_case() -> impl Strategy<Value = ResultCase> {
    (
        // 13 is the least at the default density and cutoff
        16u64..200,
        1u64..50,
        prop::sample::select(vec![
            Forgery::Honest,
            Forgery::Honest,
            Forgery::HonestFloats,
            Forgery::WrongParticles,
            Forgery::WrongSteps,
            Forgery::NoCount,
            Forgery::NegativeKinetic,
            Forgery::TotalsDoNotAddUp,
            Forgery::NonFiniteText,
            Forgery::EnergyAsText,
            Forgery::ThermoPastTheEnd,
            Forgery::MetricsNotAnObject,
            Forgery::Oversize,
        ]),
        -1e3f64..1e3,
        0.0f64..1e3,
        any::<u64>(),
    )
        .prop_map(|(n, steps, forgery, potential, kinetic, noise)| ResultCase {
            n,
            steps,
            forgery,
            potential,
            kinetic,
            noise,
        })
}

/// The answer line a forging worker writes for `case`, given the task as
/// it was sent (its id, parameters and attempt id are echoed).
fn forged_answer(case: &ResultCase, task: &Value) -> String {
    let (n, s) = (case.n, case.steps);
    let (p, k) = (case.potential, case.kinetic);
    let mut metrics = json!({
        "particles_processed": n, "steps_completed": s,
        "potential_energy_initial": p, "kinetic_energy_initial": k, "total_energy_initial": p + k,
        "potential_energy_final": p, "kinetic_energy_final": k, "total_energy_final": p + k,
        "temperature_final": k / 1.5, "max_energy_drift": 0.0, "particle_steps_per_second": 1e6,
        "thermo": [{"step": 0, "temperature": k / 1.5, "kinetic_energy": k}],
    });
    let mut output = String::from("forged");
    let mut raw_energy = None;
    match case.forgery {
        Forgery::Honest => {}
        Forgery::HonestFloats => {
            metrics["particles_processed"] = json!(n as f64);
            metrics["steps_completed"] = json!(s as f64);
        }
        Forgery::WrongParticles => {
            metrics["particles_processed"] = json!([1, n + 1, 0][(case.noise % 3) as usize])
        }
        Forgery::WrongSteps => {
            metrics["steps_completed"] = json!([s + 1, 0, s * 2][(case.noise % 3) as usize])
        }
        Forgery::NoCount => {
            let field = ["particles_processed", "steps_completed"][(case.noise % 2) as usize];
            metrics.as_object_mut().unwrap().remove(field);
        }
        Forgery::NegativeKinetic => metrics["kinetic_energy_final"] = json!(-1.0 - k),
        Forgery::TotalsDoNotAddUp => metrics["total_energy_final"] = json!(p + k + 1.0 + p.abs()),
        Forgery::NonFiniteText => raw_energy = Some(["1e999", "NaN", "-Infinity"][(case.noise % 3) as usize]),
        Forgery::EnergyAsText => metrics["potential_energy_final"] = json!("low"),
        Forgery::ThermoPastTheEnd => {
            metrics["thermo"] = json!([{"step": s + 1 + case.noise % 100,
            "temperature": 1.0, "kinetic_energy": 1.5}])
        }
        Forgery::MetricsNotAnObject => metrics = json!([n, s]),
        Forgery::Oversize => output = "x".repeat(300_000),
    }
    let line = json!({"task_id": task["task_id"], "algorithm": task["algorithm"],
        "parameters": task["parameters"], "execution_time": 0.01, "attempt_id": task["attempt_id"],
        "result": {"status": "completed", "metrics": metrics, "output": output}})
    .to_string();
    match raw_energy {
        // written by hand: serde_json writes no such number
        Some(text) => line.replacen(
            &format!("\"potential_energy_final\":{}", json!(p)),
            &format!("\"potential_energy_final\":{text}"),
            1,
        ),
        None => line,
    }
}

#[test]
fn forged_result_lines_fail_their_attempts_and_honest_ones_are_recorded() {
    const CASES: usize = 48;
    let mut runner = seeded(1);
    let cases: Vec<ResultCase> = (0..CASES)
        .map(|_| {
            use proptest::strategy::ValueTree;
            result_case().new_tree(&mut runner).unwrap().current()
        })
        .collect();
    let by_id: std::collections::HashMap<String, ResultCase> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("rf-{i}"), c.clone()))
        .collect();
    let status = json!({"worker_id": "forger", "capacity": 4, "algorithms": ["python"], "state": "idle"});
    let (addr, stop, _) = fake_worker(status, move |task| {
        let id = task["task_id"].as_str().unwrap_or_default();
        by_id
            .get(id)
            .map_or_else(|| "{}".to_string(), |c| forged_answer(c, task))
    });
    let dir = tempfile::tempdir().unwrap();
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [{"id": "forger", "host": "127.0.0.1", "port": port, "capacity": 4,
            "algorithms": ["python"]}]})
        .to_string(),
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    env.extend([
        ("MAX_TASK_RETRIES", "0"),
        ("MAX_RESULT_BYTES", "200000"),
        ("VERIFY_FRACTION", "0"),
    ]);
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    wait_until(Duration::from_secs(60), "the forger up", || {
        o.get("/workers").json()["up"] == 1
    });
    let tasks: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"task_id": format!("rf-{i}"), "algorithm": "python",
                "parameters": {"num_particles": c.n, "num_steps": c.steps, "seed": i}})
        })
        .collect();
    let r = o.post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    // a lie makes the forger suspect (no new tasks): lifted each time, so
    // every case reaches it
    wait_until(Duration::from_secs(120), "every case ended", || {
        if worker_row(&o, "forger")["suspect"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            assert_eq!(o.post("/workers/forger/resume", "").status, 200);
        }
        let by = &o.get("/stats").json()["tasks"]["by_status"];
        by["completed"].as_u64().unwrap_or(0) + by["failed"].as_u64().unwrap_or(0) == CASES as u64
    });
    let mut by_kind = std::collections::BTreeMap::<String, u32>::new();
    for (i, c) in cases.iter().enumerate() {
        let r = o.get(&format!("/tasks/rf-{i}"));
        assert!(
            r.body.len() < 100_000,
            "rf-{i} ({c:?}): a record of {} bytes",
            r.body.len()
        );
        let t = r.json();
        match c.forgery.says() {
            None => {
                assert_eq!(t["status"], "completed", "{c:?}: {t}");
                assert_eq!(
                    t["result"]["result"]["metrics"]["particles_processed"].as_f64(),
                    Some(c.n as f64),
                    "{t}"
                );
            }
            Some(said) => {
                assert_eq!(t["status"], "failed", "{c:?} was recorded: {t}");
                let error = t["attempts"][0]["error"].as_str().unwrap_or_default();
                assert!(!error.is_empty() && error.contains(said), "{c:?}: {error}");
            }
        }
        *by_kind.entry(format!("{:?}", c.forgery)).or_default() += 1;
    }
    println!("forged result lines by kind: {by_kind:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// One `POST /workers/join` body, drawn from valid and invalid fields.
#[derive(Debug, Clone)]
struct JoinCase {
    id: String,
    url: String,
    capacity: Value,
    algorithms: Value,
    instance: String,
    /// 0: no secret; 1: a made-up one; 2: the one this id was given, if any.
    secret: u8,
    drop_field: Option<&'static str>,
}

fn join_case() -> impl Strategy<Value = JoinCase> {
    let id = prop_oneof![
        12 => (0u32..10).prop_map(|k| format!("j{k}")),
        1 => Just("w1".to_string()),
        1 => prop::sample::select(vec!["", "a b", "../x", "é", "x\u{0}y"]).prop_map(str::to_string),
        1 => (100usize..400).prop_map(|n| "x".repeat(n)),
    ];
    let url = prop_oneof![
        16 => (1u16..20).prop_map(|p| format!("http://127.0.0.2:{p}")),
        1 => Just("https://127.0.0.2:7".to_string()),
        1 => Just("{own}".to_string()),
        1 => Just("http://localhost:{port}".to_string()),
        1 => prop::sample::select(vec!["ftp://x:1", "http://", "127.0.0.2:5", "http://127.0.0.2:0",
            "http://127.0.0.2:99999", "http://a b:1", ""])
        .prop_map(str::to_string),
    ];
    let capacity = prop_oneof![
        8 => prop::sample::select(vec![json!(1), json!(4), json!(4096)]),
        1 => prop::sample::select(vec![json!(0), json!(4097), json!(-1), json!("4"), json!(1.5), json!(null)]),
    ];
    let algorithms = prop_oneof![
        8 => prop::sample::select(vec![json!(["python"]), json!(["python", "cython"])]),
        1 => prop::sample::select(vec![json!([]), json!(["nope"]), json!("python"), json!(null)]),
    ];
    (
        id,
        url,
        capacity,
        algorithms,
        prop::sample::select(vec!["i0", "i1", "i2"]),
        0u8..3,
        prop::option::weighted(
            0.05,
            prop::sample::select(vec!["id", "url", "capacity", "instance"]),
        ),
    )
        .prop_map(
            |(id, url, capacity, algorithms, instance, secret, drop_field)| JoinCase {
                id,
                url,
                capacity,
                algorithms,
                instance: instance.to_string(),
                secret,
                drop_field,
            },
        )
}

#[test]
fn random_join_bodies_never_take_an_id_nor_pass_max_workers() {
    const MAX: u64 = 8;
    // w1, from the workers file: a fake that answers its health
    let status = json!({"worker_id": "w1", "capacity": 1, "algorithms": ["python"], "state": "idle"});
    let (w1, stop, _) = fake_worker(status, |_| "{}".to_string());
    let dir = tempfile::tempdir().unwrap();
    let w1_port: u16 = w1.rsplit(':').next().unwrap().parse().unwrap();
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [{"id": "w1", "host": "127.0.0.1", "port": w1_port, "capacity": 1}]}).to_string(),
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    let max = MAX.to_string();
    env.extend([("MAX_WORKERS", max.as_str()), ("WORKER_EXPIRY", "none")]);
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    let port = o.addr.rsplit(':').next().unwrap().to_string();
    // what each joined id was joined by: (instance, secret)
    let held = std::sync::Mutex::new(std::collections::HashMap::<String, (String, String)>::new());
    let by_answer = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let outcome = seeded(300).run(&join_case(), |case| {
        let mut held = held.lock().unwrap();
        let before = o.get("/workers").json()["total"].as_u64().unwrap();
        let secret = match case.secret {
            0 => String::new(),
            1 => "f".repeat(64),
            _ => held.get(&case.id).map(|h| h.1.clone()).unwrap_or_default(),
        };
        let url = case
            .url
            .replace("{own}", &format!("http://{}", o.addr))
            .replace("{port}", &port);
        let mut body = json!({"id": case.id, "url": url, "capacity": case.capacity,
            "algorithms": case.algorithms, "instance": case.instance, "version": "fuzz", "secret": secret});
        if let Some(field) = case.drop_field {
            body.as_object_mut().unwrap().remove(field);
        }
        let r = o.post("/workers/join", &body.to_string());
        let said = format!("{body} → {} {}", r.status, r.text());
        prop_assert!(r.status < 500, "{}", said);
        let answer = r.json();
        match r.status {
            200 => {
                prop_assert!(case.id != "w1", "a join took the configured w1: {}", said);
                if let Some((instance, kept)) = held.get(&case.id) {
                    prop_assert!(
                        *instance == case.instance || *kept == secret,
                        "another instance took {} without its secret: {}",
                        case.id,
                        said
                    );
                } else {
                    prop_assert!(before < MAX, "a new member past MAX_WORKERS: {}", said);
                }
                let entry = held.entry(case.id.clone()).or_default();
                entry.0 = case.instance.clone();
                if let Some(s) = answer["secret"].as_str() {
                    entry.1 = s.to_string();
                }
            }
            409 => {
                let code = answer["code"].as_str().unwrap_or_default();
                prop_assert!(
                    code == "worker_id_taken" || code == "too_many_workers",
                    "{}",
                    said
                );
                if code == "too_many_workers" {
                    prop_assert_eq!(before, MAX, "{}", said);
                }
            }
            _ => prop_assert!(
                answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "a refusal that does not say why: {}",
                said
            ),
        }
        let after = o.get("/workers").json()["total"].as_u64().unwrap();
        prop_assert!(after <= MAX, "{} members: {}", after, said);
        let row = worker_row(&o, "w1");
        prop_assert_eq!(&row["address"], &json!(w1.as_str()), "w1 moved: {}", said);
        let key = format!("{} {}", r.status, answer["code"].as_str().unwrap_or(""));
        *by_answer.lock().unwrap().entry(key).or_default() += 1;
        Ok(())
    });
    println!("join answers: {:?}", by_answer.lock().unwrap());
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let by = by_answer.into_inner().unwrap();
    for key in ["200 ", "409 worker_id_taken", "409 too_many_workers"] {
        assert!(by.contains_key(key), "no join answered {key:?}: {by:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
