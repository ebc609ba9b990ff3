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
