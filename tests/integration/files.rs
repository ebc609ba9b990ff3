//! Files as records (issue 13): `GET /files` lists ingested and rejected
//! files with their counts and summary, `GET /files/{id}` with the
//! rejection report; a file whose ids exist is rejected with where their
//! results are and how to run them again; `GET /tasks?file=&sort=`;
//! `POST /tasks/known` and `orquesta validate --url`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{http_with, orquesta, stderr, stdout, wait_until, Cluster, Proc, WorkerSpec};

const LONG: Duration = Duration::from_secs(60);

/// Writes a task file aside and renames it into the drop folder.
fn drop_file(c: &Cluster, name: &str, tasks: Value) {
    let dir = c.path("task_queues");
    std::fs::create_dir_all(&dir).unwrap();
    let part = dir.join(format!("{name}.part"));
    std::fs::write(&part, json!({ "tasks": tasks }).to_string()).unwrap();
    std::fs::rename(part, dir.join(name)).unwrap();
}

fn task(id: &str, priority: &str) -> Value {
    json!({"task_id": id, "algorithm": "python", "priority": priority,
           "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}})
}

fn files(o: &Proc, query: &str) -> Value {
    let r = o.get(&format!("/files{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn ids_of(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

/// A 4xx answer and its code.
fn refused(r: crate::common::Response) -> (u16, String, String) {
    let body = r.json();
    (
        r.status,
        body["code"].as_str().unwrap_or_default().to_string(),
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn ingested_and_rejected_files_are_listed_with_counts_and_reports() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 2)], &[]);
    let o = c.orch();
    drop_file(
        &c,
        "good.json",
        json!([task("g0", "high"), task("g1", "low"), task("g2", "medium")]),
    );
    c.wait_count("completed", 3, LONG);
    drop_file(
        &c,
        "bad.json",
        json!([{"task_id": "b0", "algorithm": "java", "parameters": {}}]),
    );
    wait_until(LONG, "the rejected file recorded", || {
        files(o, "?state=rejected")["total"] == 1
    });
    let all = files(o, "");
    assert_eq!(all["total"], 2, "{all}");
    let (bad, good) = (&all["files"][0], &all["files"][1]);
    // newest first
    assert_eq!(
        (bad["name"].as_str(), good["name"].as_str()),
        (Some("bad.json"), Some("good.json"))
    );
    assert_eq!(good["state"], "ingested");
    assert_eq!(good["tasks"], 3);
    assert_eq!(
        good["counts"],
        json!({"queued": 0, "running": 0, "completed": 3, "failed": 0, "cancelled": 0})
    );
    assert_eq!(
        (good["problems"].clone(), good["summary"].clone()),
        (json!(0), Value::Null)
    );
    let stored = good["stored_as"].as_str().unwrap();
    assert!(
        stored.contains("processed") && stored.ends_with("_good.json"),
        "{good}"
    );
    assert!(Path::new(stored).exists(), "{stored}");
    assert!(good["at"].as_f64().unwrap() > 1.7e9, "{good}");
    assert_eq!(bad["state"], "rejected");
    assert_eq!(bad["tasks"], 0);
    let problems = bad["problems"].as_u64().unwrap();
    let report = std::fs::read_to_string(c.path("task_queues/rejected/bad.json.error.txt")).unwrap();
    assert!(
        report.contains(&format!("rejected: {problems} problems found")),
        "{problems}: {report}"
    );
    assert_eq!(
        bad["counts"],
        json!({"queued": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0})
    );
    assert!(bad["summary"].as_str().unwrap().contains("java"), "{bad}");
    assert!(
        bad["stored_as"].as_str().unwrap().ends_with("rejected/bad.json"),
        "{bad}"
    );
    // one file: the report as written beside it; none for an ingested one
    let one = o.get(&format!("/files/{}", bad["id"])).json();
    assert_eq!(one["report"], json!(report));
    assert_eq!(one["name"], "bad.json");
    assert_eq!(
        o.get(&format!("/files/{}", good["id"])).json()["report"],
        Value::Null
    );
    // by state, and paged
    let ingested = files(o, "?state=ingested&limit=1&offset=0");
    assert_eq!(
        (ingested["total"].clone(), ingested["files"][0]["name"].clone()),
        (json!(1), json!("good.json"))
    );
    assert_eq!(files(o, "?limit=1&offset=1")["files"][0]["name"], "good.json");
    // bad ids and parameters: a JSON error with its code
    let (status, code, error) = refused(o.get("/files/999"));
    assert_eq!((status, code.as_str()), (404, "not_found"), "{error}");
    assert!(error.contains("GET /files"), "{error}");
    for bad_query in [
        "/files/abc",
        "/files/0",
        "/files?state=done",
        "/files?limit=0",
        "/files?offset=-1",
    ] {
        let (status, code, error) = refused(o.get(bad_query));
        assert_eq!(
            (status, code.as_str()),
            (400, "bad_request"),
            "{bad_query}: {error}"
        );
    }
}

#[test]
fn a_copy_of_a_file_that_ran_is_rejected_with_where_its_results_are() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 2)], &[("MAX_TASK_RETRIES", "0")]);
    let o = c.orch();
    let tasks = json!([
        task("t1", "high"),
        task("t2", "high"),
        {"task_id": "t3", "algorithm": "__panic", "parameters": {}}
    ]);
    drop_file(&c, "tareas.json", tasks.clone());
    c.wait_count("completed", 2, LONG);
    c.wait_count("failed", 1, LONG);
    wait_until(LONG, "t1's results file", || {
        !c.task("t1")["results_file"].is_null()
    });
    let results_file = c.task("t1")["results_file"].as_str().unwrap().to_string();
    // the seed's workflow: the example copied under a new name
    drop_file(&c, "tareas_copia.json", tasks);
    let report_path = c.path("task_queues/rejected/tareas_copia.json.error.txt");
    wait_until(LONG, "the copy's report", || report_path.exists());
    let report = std::fs::read_to_string(&report_path).unwrap();
    assert!(report.contains("3 task id(s) already exist"), "{report}");
    assert!(
        report.contains(&format!("completed, result in {results_file}")),
        "{report}"
    );
    assert!(report.contains("t3  failed, no result"), "{report}");
    assert!(report.contains("POST /tasks/{id}/retry"), "{report}");
    assert!(
        report.contains("/tasks/t3/retry"),
        "the failed one as the example: {report}"
    );
    assert!(report.contains("orquesta gen"), "{report}");
    let copy = &files(o, "?state=rejected")["files"][0];
    assert_eq!(copy["name"], "tareas_copia.json");
    assert!(
        copy["summary"].as_str().unwrap().contains("already exist"),
        "{copy}"
    );
    // nothing of the copy ran: the original file's counts are unchanged
    let original = &files(o, "?state=ingested")["files"][0];
    assert_eq!(original["counts"]["completed"], 2, "{original}");
    assert_eq!(original["counts"]["failed"], 1, "{original}");
    // the API's 409 says the same
    let r = o.post("/tasks", &task("t1", "low").to_string());
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["known"][0]["results_file"],
        json!(results_file),
        "{}",
        r.text()
    );
}

#[test]
fn tasks_filter_by_file_and_sort() {
    let c = Cluster::start(&[], &[]);
    let o = c.orch();
    let r = o.post(
        "/tasks",
        &json!([task("api1", "low"), task("api2", "high")]).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    drop_file(
        &c,
        "f.json",
        json!([task("f0", "medium"), task("f1", "high"), task("f2", "low")]),
    );
    wait_until(LONG, "f.json queued", || {
        o.get("/tasks?limit=1").json()["total"] == 5
    });
    let page = |q: &str| {
        let r = o.get(&format!("/tasks?{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r.json()
    };
    let f = page("file=f.json");
    assert_eq!(
        (ids_of(&f), f["total"].clone()),
        (vec!["f0".into(), "f1".into(), "f2".into()], json!(3))
    );
    assert_eq!(ids_of(&page("file=api")), ["api1", "api2"]);
    assert_eq!(page("file=nope.json")["total"], 0);
    assert_eq!(ids_of(&page("sort=priority")), ["api2", "f1", "f0", "api1", "f2"]);
    assert_eq!(ids_of(&page("file=f.json&sort=priority")), ["f1", "f0", "f2"]);
    assert_eq!(
        ids_of(&page("sort=-created_at")),
        ["f2", "f1", "f0", "api2", "api1"]
    );
    assert_eq!(ids_of(&page("sort=created_at&limit=2&offset=1")), ["api2", "f0"]);
    // a retried task was created again: last by created_at, not by arrival
    assert_eq!(o.delete("/tasks/api1").status, 200);
    assert_eq!(o.post("/tasks/api1/retry", "").status, 200);
    assert_eq!(
        ids_of(&page("sort=created_at")),
        ["api2", "f0", "f1", "f2", "api1"]
    );
    assert_eq!(
        ids_of(&page("")),
        ["api1", "api2", "f0", "f1", "f2"],
        "default: arrival"
    );
    let (status, code, error) = refused(o.get("/tasks?sort=name"));
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert!(error.contains("created_at, -created_at or priority"), "{error}");

    // which ids it knows, with status and results file
    let r = o.post(
        "/tasks/known",
        &json!({"task_ids": ["f0", "zzz", "api2"]}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"asked": 3, "known": [
            {"task_id": "f0", "status": "queued", "results_file": null},
            {"task_id": "api2", "status": "queued", "results_file": null}]})
    );
    let many: Vec<String> = (0..5001).map(|i| format!("x{i}")).collect();
    for bad in [
        json!({"task_ids": ["no spaces"]}),
        json!({"task_ids": many}),
        json!({"ids": []}),
    ] {
        let (status, code, _) = refused(o.post("/tasks/known", &bad.to_string()));
        assert_eq!((status, code.as_str()), (400, "bad_request"));
    }
    // a task named `known` is still a task
    let (status, code, _) = refused(o.get("/tasks/known"));
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

/// `orquesta validate ARGS…` in `dir` with `envs`, no token from this
/// process's environment; its exit code and output.
fn validate(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = orquesta()
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .env_remove("ORQUESTA_TOKEN")
        .env_remove("ORQUESTA_TOKEN_FILE")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn validate_url_warns_about_ids_the_orchestrator_knows() {
    const SECRET: &str = "files-test-token-0123456789abcdef";
    // no worker: the file's tasks stay queued
    let c = Cluster::start(&[], &[("ORQUESTA_TOKEN", SECRET)]);
    let o = c.orch();
    drop_file(&c, "tareas.json", json!([task("v1", "high"), task("v2", "low")]));
    let authed = |path: &str| {
        http_with(
            "GET",
            &o.addr,
            path,
            None,
            &[("authorization", &format!("Bearer {SECRET}"))],
        )
    };
    wait_until(LONG, "tareas.json queued", || {
        authed("/tasks?limit=1").json()["total"] == 2
    });
    assert_eq!(o.get("/files").status, 401, "behind the token");
    assert_eq!(authed("/files").json()["total"], 1);
    let dir = c.dir.path();
    let copy = dir.join("copia.json");
    std::fs::write(
        &copy,
        json!({"tasks": [task("v1", "high"), task("v9", "low")]}).to_string(),
    )
    .unwrap();
    let fresh = dir.join("nueva.json");
    std::fs::write(&fresh, json!({"tasks": [task("n1", "high")]}).to_string()).unwrap();
    let bad = dir.join("mala.json");
    std::fs::write(&bad, json!({"tasks": [{"task_id": "m1"}]}).to_string()).unwrap();
    let url = o.url("");
    let token = [("ORQUESTA_TOKEN", SECRET)];
    let copy = copy.to_str().unwrap();

    let (code, out) = validate(dir, &[copy, "--url", &url], &token);
    assert_eq!(code, Some(3), "valid but would be rejected: {out}");
    assert!(out.contains("ok, 2 tasks"), "{out}");
    assert!(out.contains("1 of its 2 task ids are already known"), "{out}");
    assert!(out.contains("v1  queued, not run yet"), "{out}");
    assert!(!out.contains("v9"), "{out}");
    assert!(out.contains("orquesta gen"), "{out}");

    let (code, out) = validate(dir, &[fresh.to_str().unwrap(), "--url", &url], &token);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("none of its task ids is known"), "{out}");

    let (code, out) = validate(dir, &[bad.to_str().unwrap(), "--url", &url], &token);
    assert_eq!(code, Some(1), "{out}");

    // the token from a file, like every client command
    let token_file = dir.join("token");
    std::fs::write(&token_file, SECRET).unwrap();
    let (code, out) = validate(
        dir,
        &[copy, "--url", &url, "--token-file", token_file.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, Some(3), "{out}");

    // without it the orchestrator cannot be asked
    let (code, out) = validate(dir, &[copy, "--url", &url], &[]);
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("401"), "{out}");
    // and without --url nothing is asked: as before
    let (code, out) = validate(dir, &[copy], &[]);
    assert_eq!(code, Some(0), "{out}");
}
