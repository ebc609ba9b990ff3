//! Bad input of every kind, as files dropped into task_queues/ and as
//! requests: each is refused with a report that names the problem, the
//! orchestrator stays up, and nothing of it runs.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{http_raw, request_bytes, wait_until, Cluster, WorkerSpec};

fn task(id: &str) -> Value {
    json!({"task_id": id, "algorithm": "python", "parameters": {"num_particles": 50, "num_steps": 1, "seed": 1}})
}

fn with(id: &str, field: &str, value: Value) -> String {
    let mut t = task(id);
    t[field] = value;
    json!({ "tasks": [t] }).to_string()
}

fn with_param(id: &str, field: &str, value: Value) -> String {
    let mut t = task(id);
    t["parameters"][field] = value;
    json!({ "tasks": [t] }).to_string()
}

#[test]
fn bad_files_are_rejected_with_a_report_and_nothing_runs() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[("TASK_FILE_MAX_BYTES", "200000")]);
    c.wait_workers_up();
    // a task the duplicate file collides with
    assert_eq!(c.orch().post("/tasks", &task("known").to_string()).status, 201);
    c.wait_count("completed", 1, Duration::from_secs(60));

    let deep = format!("{{\"tasks\": {}{}}}", "[".repeat(300), "]".repeat(300));
    let huge = json!({"tasks": [task("big")], "pad": "x".repeat(300_000)}).to_string();
    let mut invalid_utf8 = br#"{"tasks": [{"task_id": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#"", "algorithm": "python", "parameters": {}}]}"#);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "the file is empty"),
        ("blank", b"  \n\t ".to_vec(), "the file is empty"),
        (
            "text",
            b"task_001,python,100".to_vec(),
            "malformed JSON at line 1",
        ),
        ("nan", b"{\"tasks\": [NaN]}".to_vec(), "malformed JSON"),
        (
            "array_top",
            b"[1, 2, 3]".to_vec(),
            "expected a JSON object with a \"tasks\" array",
        ),
        ("string_top", b"\"tasks\"".to_vec(), "expected a JSON object"),
        ("number_top", b"42".to_vec(), "expected a JSON object"),
        ("null_top", b"null".to_vec(), "expected a JSON object"),
        ("no_tasks", br#"{"metadata": {}}"#.to_vec(), "tasks: required"),
        (
            "tasks_object",
            br#"{"tasks": {"task_id": "x"}}"#.to_vec(),
            "tasks: expected an array",
        ),
        ("tasks_empty", br#"{"tasks": []}"#.to_vec(), "the array is empty"),
        (
            "task_string",
            br#"{"tasks": ["task_001"]}"#.to_vec(),
            "tasks[0]: expected a task object",
        ),
        (
            "no_id",
            json!({"tasks": [{"algorithm": "python", "parameters": task("x")["parameters"]}]})
                .to_string()
                .into_bytes(),
            "tasks[0].task_id: required",
        ),
        (
            "numeric_id",
            with("x", "task_id", json!(17)).into_bytes(),
            "tasks[0].task_id: expected a string, found 17",
        ),
        (
            "path_id",
            with("x", "task_id", json!("../../etc/passwd")).into_bytes(),
            "tasks[0].task_id: expected only letters",
        ),
        (
            "slash_id",
            with("x", "task_id", json!("a/b")).into_bytes(),
            "tasks[0].task_id: expected only letters",
        ),
        (
            "empty_id",
            with("x", "task_id", json!("")).into_bytes(),
            "tasks[0].task_id: expected a non-empty id",
        ),
        (
            "long_id",
            with("x", "task_id", json!("x".repeat(200))).into_bytes(),
            "at most 128 characters",
        ),
        (
            "unknown_algorithm",
            with("ua", "algorithm", json!("fortran")).into_bytes(),
            "tasks[0].algorithm: expected one of",
        ),
        (
            "numeric_algorithm",
            with("na", "algorithm", json!(3)).into_bytes(),
            "tasks[0].algorithm: expected a string",
        ),
        (
            "no_parameters",
            json!({"tasks": [{"task_id": "np", "algorithm": "python"}]})
                .to_string()
                .into_bytes(),
            "tasks[0].parameters: required",
        ),
        (
            "parameters_array",
            with("pa", "parameters", json!([1, 2])).into_bytes(),
            "tasks[0].parameters: expected an object",
        ),
        (
            "string_particles",
            with_param("sp", "num_particles", json!("100")).into_bytes(),
            "num_particles: expected a whole number, found \"100\"",
        ),
        (
            "negative_particles",
            with_param("ng", "num_particles", json!(-4)).into_bytes(),
            "num_particles: expected a whole number ≥ 13, found -4",
        ),
        (
            "too_few_particles",
            with_param("tf", "num_particles", json!(5)).into_bytes(),
            "num_particles: expected a whole number ≥ 13, found 5",
        ),
        (
            "absurd_particles",
            with_param("ap", "num_particles", json!(1_000_000_000_000u64)).into_bytes(),
            "limit",
        ),
        (
            "fractional_steps",
            with_param("fs", "num_steps", json!(1.5)).into_bytes(),
            "num_steps: expected a whole number, found 1.5",
        ),
        (
            "absurd_work",
            with_param("aw", "num_steps", json!(10_000_000_000u64)).into_bytes(),
            "split the run",
        ),
        (
            "negative_seed",
            with_param("ns", "seed", json!(-1)).into_bytes(),
            "seed: expected a whole number ≥ 0",
        ),
        (
            "zero_density",
            with_param("zd", "density", json!(0)).into_bytes(),
            "density: expected a number from 1e-6 to 1.2, found 0",
        ),
        (
            "string_dt",
            with_param("sd", "dt", json!("fast")).into_bytes(),
            "dt: expected a number, found \"fast\"",
        ),
        (
            "bad_priority",
            with("bp", "priority", json!("urgent")).into_bytes(),
            "priority: expected \"high\", \"medium\" or \"low\"",
        ),
        (
            "numeric_priority",
            with("np2", "priority", json!(1)).into_bytes(),
            "priority: expected",
        ),
        (
            "numeric_description",
            with("nd", "description", json!(5)).into_bytes(),
            "description: expected a string",
        ),
        (
            "dup_inside",
            json!({"tasks": [task("twin"), task("twin")]})
                .to_string()
                .into_bytes(),
            "tasks[1].task_id: duplicate id \"twin\"",
        ),
        (
            "dup_known",
            json!({"tasks": [task("fresh"), task("known")]})
                .to_string()
                .into_bytes(),
            "already known",
        ),
        ("deep", deep.into_bytes(), "nested more than"),
        ("utf8", invalid_utf8, "not valid UTF-8"),
        (
            "metadata_list",
            br#"{"metadata": [1], "tasks": []}"#.to_vec(),
            "metadata: expected an object",
        ),
        (
            "total_string",
            json!({"metadata": {"total_tasks": "ten"}, "tasks": [task("ts")]})
                .to_string()
                .into_bytes(),
            "metadata.total_tasks: expected a whole number",
        ),
        ("too_big", huge.into_bytes(), "more than TASK_FILE_MAX_BYTES"),
        (
            "sleep_seconds",
            json!({"tasks": [{"task_id": "sl", "algorithm": "__sleep", "parameters": {"seconds": -2}}]})
                .to_string()
                .into_bytes(),
            "seconds: expected a number of seconds",
        ),
    ];
    assert!(cases.len() >= 30);
    for (name, bytes, _) in &cases {
        std::fs::write(c.path(&format!("task_queues/{name}.json")), bytes).unwrap();
    }
    for (name, _, phrase) in &cases {
        let report = c.path(&format!("task_queues/rejected/{name}.json.error.txt"));
        wait_until(Duration::from_secs(60), &format!("{name} rejected"), || {
            report.exists()
        });
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(text.contains(phrase), "{name}: report lacks {phrase:?}:\n{text}");
        assert!(
            c.path(&format!("task_queues/rejected/{name}.json")).exists(),
            "{name} moved beside its report"
        );
        assert!(!c.path(&format!("task_queues/{name}.json")).exists());
    }
    // still up, and nothing of a rejected file was queued
    assert_eq!(c.orch().get("/health").status, 200);
    assert_eq!(c.orch().get("/tasks").json()["total"], 1);
    assert_eq!(c.orch().get("/tasks/fresh").status, 404);
    // a file with several problems lists every one
    let many = json!({"tasks": [with_param("m1", "num_particles", json!(-1)), task("m2"), {"task_id": 5}]})
        .to_string();
    std::fs::write(c.path("task_queues/many.json"), many).unwrap();
    let report = c.path("task_queues/rejected/many.json.error.txt");
    wait_until(Duration::from_secs(30), "many rejected", || report.exists());
    let text = std::fs::read_to_string(report).unwrap();
    assert!(
        text.contains("problems found") && text.contains("tasks[0]") && text.contains("tasks[2].task_id"),
        "{text}"
    );
    // the same name rejected twice does not overwrite the first report
    std::fs::write(c.path("task_queues/empty.json"), "").unwrap();
    wait_until(Duration::from_secs(30), "second empty rejected", || {
        std::fs::read_dir(c.path("task_queues/rejected"))
            .unwrap()
            .flatten()
            .any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with("_empty.json.error.txt")
            })
    });
}

#[test]
fn a_byte_order_mark_and_unknown_fields_are_fine() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    let mut bytes = vec![0xef, 0xbb, 0xbf];
    let mut t = task("bom");
    t["owner"] = json!("ana");
    t["parameters"]["note"] = json!("kept");
    bytes.extend_from_slice(json!({"tasks": [t], "extra_top_level": 1}).to_string().as_bytes());
    std::fs::create_dir_all(c.path("task_queues")).unwrap();
    std::fs::write(c.path("task_queues/bom.json"), bytes).unwrap();
    c.wait_count("completed", 1, Duration::from_secs(60));
    wait_until(Duration::from_secs(10), "result", || !c.results().is_empty());
    let r = &c.results()[0];
    assert_eq!(r["parameters"]["note"], "kept");
}

#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[("MAX_REQUEST_BYTES", "100000")]);
    c.wait_workers_up();
    assert_eq!(c.orch().post("/tasks", &task("done").to_string()).status, 201);
    c.wait_count("completed", 1, Duration::from_secs(60));
    let o = c.orch();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/tasks", String::new(), 400, "empty"),
        ("POST", "/tasks", "{\"task_id\": ".into(), 400, "malformed JSON"),
        ("POST", "/tasks", "hello".into(), 400, "malformed JSON"),
        ("POST", "/tasks", "42".into(), 422, "expected a task object"),
        ("POST", "/tasks", "[1, 2]".into(), 422, "tasks[0]"),
        ("POST", "/tasks", deep, 400, "malformed JSON"),
        (
            "POST",
            "/tasks",
            json!({"task_id": "bad", "algorithm": "python"}).to_string(),
            422,
            "parameters: required",
        ),
        ("POST", "/tasks", task("done").to_string(), 409, "already exist"),
        (
            "POST",
            "/tasks",
            json!({"tasks": [task("p"), task("p")]}).to_string(),
            422,
            "duplicate id",
        ),
        (
            "POST",
            "/tasks",
            json!({"task_id": "x", "pad": "y".repeat(200_000)}).to_string(),
            413,
            "limit",
        ),
        (
            "GET",
            "/tasks?status=finished",
            String::new(),
            400,
            "status: expected one of",
        ),
        (
            "GET",
            "/tasks?priority=urgent",
            String::new(),
            400,
            "priority: expected",
        ),
        ("GET", "/tasks?limit=0", String::new(), 400, "limit"),
        (
            "GET",
            "/tasks?limit=many",
            String::new(),
            400,
            "limit: expected a whole number, found \"many\"",
        ),
        (
            "GET",
            "/tasks?offset=-1",
            String::new(),
            400,
            "offset: expected a whole number, found \"-1\"",
        ),
        ("GET", "/tasks/a%2Fb", String::new(), 400, "invalid task id"),
        ("GET", "/tasks/nobody", String::new(), 404, "no task"),
        ("DELETE", "/tasks/nobody", String::new(), 404, "no task"),
        ("DELETE", "/tasks/done", String::new(), 409, "already ended"),
        (
            "POST",
            "/tasks/done/retry",
            String::new(),
            409,
            "only failed or cancelled",
        ),
        ("POST", "/tasks/nobody/retry", String::new(), 404, "no task"),
        ("GET", "/workers/nobody", String::new(), 404, "no worker"),
        ("GET", "/nowhere", String::new(), 404, "no endpoint"),
        ("PUT", "/tasks", String::new(), 405, "not allowed"),
        ("DELETE", "/stats", String::new(), 405, "not allowed"),
    ];
    assert!(cases.len() >= 15);
    for (method, path, body, code, phrase) in &cases {
        let body = (!body.is_empty()).then_some(body.as_bytes());
        let r = http_raw(&o.addr, &request_bytes(method, &o.addr, path, body));
        assert_eq!(r.status, *code, "{method} {path}: {}", r.text());
        let v = r.json();
        let e = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no error in {v}"));
        assert!(e.contains(phrase), "{method} {path}: {e:?} lacks {phrase:?}");
    }
    // invalid UTF-8 in a body
    let r = http_raw(
        &o.addr,
        &request_bytes("POST", &o.addr, "/tasks", Some(&[b'{', 0xff, b'}'])),
    );
    assert_eq!(r.status, 400);
    // an offset past every task is an empty page, however large (it once
    // wrapped to a negative OFFSET and gave the first page)
    for offset in ["1", "18446744073709551615"] {
        let page = o.get(&format!("/tasks?offset={offset}")).json();
        assert_eq!(
            (page["total"].clone(), page["tasks"].clone()),
            (json!(1), json!([])),
            "{offset}"
        );
    }
    // nothing changed, still serving
    assert_eq!(o.get("/tasks").json()["total"], 1);
    assert_eq!(o.get("/health").status, 200);
}
