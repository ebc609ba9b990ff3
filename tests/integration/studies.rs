//! Parameter studies (issue 20): `gen --grid/--set/--replicas/--study`
//! writes a file `validate` accepts with one task per grid point and
//! replica; a task's `study` comes back from `GET /tasks/{id}` and in its
//! result; `results export` gives CSV and Parquet that an independent
//! reader (pyarrow) reads back with the same bits as `GET /tasks/{id}`;
//! and exporting 1,000,000 rows keeps the orchestrator's memory flat.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{orquesta, peak_rss_bytes, run, stderr, stdout, wait_until, Cluster, WorkerSpec};
use crate::probes::missing_tool;

const LONG: Duration = Duration::from_secs(300);

/// The tasks of a task file.
fn tasks_of(path: &Path) -> Vec<Value> {
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    file["tasks"].as_array().unwrap().clone()
}

#[test]
fn gen_writes_one_task_per_grid_point_and_replica_that_validate_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("study.json");
    let f = file.to_str().unwrap();
    let grid = [
        "gen",
        "--grid",
        "num_particles=16,25",
        "--grid",
        "temperature=0.5:1.0:0.25",
        "--set",
        "num_steps=5",
        "--set",
        "dt=0.002",
        "--replicas",
        "3",
        "--study",
        "t-sweep",
        "--seed",
        "11",
        "--prefix",
        "st",
        "-o",
        f,
    ];
    let out = run(&grid);
    assert!(out.status.success(), "{}", stderr(&out));
    let tasks = tasks_of(&file);
    assert_eq!(tasks.len(), 2 * 3 * 3);
    let points: BTreeSet<String> = tasks
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["parameters"]["num_particles"], t["parameters"]["temperature"]
            )
        })
        .collect();
    assert_eq!(points.len(), 6, "{points:?}");
    let seeds: BTreeSet<u64> = tasks
        .iter()
        .map(|t| t["parameters"]["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), tasks.len(), "a distinct seed per task");
    for t in &tasks {
        assert_eq!(t["study"], "t-sweep");
        assert_eq!(t["parameters"]["dt"], 0.002);
        assert_eq!(t["parameters"]["num_steps"], 5);
    }
    let out = run(&["validate", f]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // the same --seed gives the same file
    let again = dir.path().join("again.json");
    let mut same = grid.to_vec();
    *same.last_mut().unwrap() = again.to_str().unwrap();
    assert!(run(&same).status.success());
    assert_eq!(tasks_of(&again), tasks);

    // refused before anything is written, with the reason
    let refused = dir.path().join("refused.json");
    let r = refused.to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "gen",
                "--grid",
                "density=0.5,0.6",
                "--count",
                "5",
                "--set",
                "num_particles=100",
                "-o",
                r,
            ],
            "--count cannot be used with --grid",
        ),
        (
            vec![
                "gen",
                "--grid",
                "density=0.5,5",
                "--set",
                "num_particles=100",
                "--set",
                "num_steps=1",
                "-o",
                r,
            ],
            "--grid density: the value 5.0: expected a number from 1e-6 to 1.2",
        ),
        (
            vec!["gen", "--grid", "tempreature=1,2", "-o", r],
            "unknown parameter \"tempreature\"",
        ),
        (
            vec!["gen", "--grid", "density=0.5", "--set", "num_steps=1", "-o", r],
            "num_particles is not given",
        ),
        (
            // a million values on one axis: refused at once for the count
            // (it once hung comparing every value with every other one)
            vec![
                "gen",
                "--grid",
                "num_particles=100:1000000:1",
                "--replicas",
                "1000",
                "-o",
                r,
            ],
            "--grid: the grid has more than 1000000 tasks",
        ),
        (
            vec!["gen", "--study", "my study", "-o", r],
            "--study: expected a study name of",
        ),
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(!refused.exists(), "{args:?} wrote a file");
    }
}

/// Reads the CSV and the Parquet with pyarrow and prints each as JSON
/// lines (floats as Python's repr: the shortest text of the same bits).
const READ_BACK: &str = r#"
import json, sys
import pyarrow, pyarrow.csv, pyarrow.parquet
for kind, path in (("csv", sys.argv[1]), ("parquet", sys.argv[2])):
    if kind == "csv":
        # text stays text (pyarrow would read completed_at as a timestamp)
        text = {name: pyarrow.string() for name in ("completed_at", "study", "file", "worker_id")}
        table = pyarrow.csv.read_csv(path, convert_options=pyarrow.csv.ConvertOptions(column_types=text))
    else:
        table = pyarrow.parquet.read_table(path)
    types = {f.name: str(f.type) for f in table.schema}
    for row in table.to_pylist():
        print(json.dumps({"kind": kind, "types": types, "row": row}))
"#;

fn pyarrow_available(test: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", "import pyarrow.csv, pyarrow.parquet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        missing_tool(test, "python3 with pyarrow (python3 -m pip install pyarrow)");
    }
    found
}

#[test]
fn an_export_read_back_by_pyarrow_has_the_bits_of_get_tasks() {
    let test = "an_export_read_back_by_pyarrow_has_the_bits_of_get_tasks";
    if !pyarrow_available(test) {
        return;
    }
    let c = Cluster::start(&[WorkerSpec::new("w1", 4)], &[]);
    let queue = c.path("task_queues");
    std::fs::create_dir_all(&queue).unwrap();
    let part = queue.join("rho.json.part");
    let out = run(&[
        "gen",
        "--grid",
        "density=0.4,0.6",
        "--grid",
        "temperature=0.8,1.2",
        "--set",
        "num_particles=30",
        "--set",
        "num_steps=20",
        "--set",
        "thermo_every=5",
        "--replicas",
        "2",
        "--study",
        "rho",
        "--seed",
        "5",
        "--prefix",
        "rho",
        "-o",
        part.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::rename(&part, queue.join("rho.json")).unwrap();
    // another study, and a task of none, that the filter leaves out
    let other = json!({"tasks": [
        {"task_id": "other1", "algorithm": "reference", "study": "other",
         "parameters": {"num_particles": 20, "num_steps": 1, "seed": 1}},
        {"task_id": "none1", "algorithm": "reference", "parameters": {"num_particles": 20, "num_steps": 1, "seed": 2}}]});
    std::fs::write(queue.join("other.json"), other.to_string()).unwrap();
    c.wait_count("completed", 10, LONG);

    // the study comes back from GET /tasks/{id} and in the result
    let task = c.task("rho_001");
    assert_eq!(task["study"], "rho", "{task}");
    assert_eq!(task["result"]["study"], "rho", "{task}");
    assert!(c.task("none1").get("study").is_none());
    wait_until(LONG, "every result on disk", || c.results().len() >= 10);
    let on_disk = c.results();
    let record = on_disk.iter().find(|r| r["task_id"] == "rho_001").unwrap();
    assert_eq!(record["study"], "rho");

    let url = c.orch().url("");
    let csv = c.path("rho.csv");
    let parquet = c.path("rho.parquet");
    for (format, path) in [("csv", &csv), ("parquet", &parquet)] {
        let out = run(&[
            "results",
            "export",
            "--url",
            &url,
            "--study",
            "rho",
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert!(stderr(&out).contains("exported 8 rows"), "{}", stderr(&out));
    }
    let read = Command::new("python3")
        .args(["-c", READ_BACK, csv.to_str().unwrap(), parquet.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let mut rows = 0;
    for line in String::from_utf8(read.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let (kind, row, types) = (&v["kind"], &v["row"], &v["types"]);
        if kind == "parquet" {
            assert_eq!(types["seed"], "uint64", "{types}");
            assert_eq!(types["total_energy_final"], "double", "{types}");
        }
        let id = row["task_id"].as_str().unwrap();
        let t = c.task(id);
        let metrics = &t["result"]["result"]["metrics"];
        assert_eq!(row["study"], "rho");
        assert_eq!(row["file"], "rho.json");
        assert_eq!(row["status"], "completed");
        assert_eq!(row["worker_id"], "w1");
        assert_eq!(row["kernel"], t["kernel"]);
        assert_eq!(row["completed_at"], t["result"]["completed_at"], "{kind}");
        for p in ["num_particles", "num_steps", "seed"] {
            assert_eq!(row[p].as_u64(), t["parameters"][p].as_u64(), "{kind} {id} {p}");
        }
        for p in ["density", "temperature"] {
            assert_eq!(
                row[p].as_f64().unwrap().to_bits(),
                t["parameters"][p].as_f64().unwrap().to_bits()
            );
        }
        assert_eq!(row["dt"].as_f64(), Some(0.005), "the default, filled in");
        assert_eq!(row["cutoff"].as_f64(), Some(2.5));
        let mut compared = 0;
        for (name, value) in metrics.as_object().unwrap() {
            if let Some(f) = value.as_f64().filter(|_| value.is_f64()) {
                let got = row[name.as_str()]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{kind} {id}: no {name}"));
                assert_eq!(
                    got.to_bits(),
                    f.to_bits(),
                    "{kind} {id} {name}: {got} against {f}"
                );
                compared += 1;
            }
        }
        assert!(compared >= 9, "{kind} {id}: {compared} metrics");
        // metrics.averages, flattened into <observable>_mean and _sem
        let averages = metrics["averages"]
            .as_object()
            .expect("thermo_every gives averages");
        for (observable, fields) in averages {
            for field in ["mean", "sem"] {
                let column = format!("{observable}_{field}");
                let want = fields[field].as_f64().unwrap();
                let got = row[column.as_str()]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{kind} {id}: no {column}"));
                assert_eq!(got.to_bits(), want.to_bits(), "{kind} {id} {column}");
            }
        }
        assert_eq!(averages.len(), 4, "{kind} {id}");
        let time = t["result"]["execution_time"].as_f64().unwrap();
        assert_eq!(row["execution_time"].as_f64().unwrap().to_bits(), time.to_bits());
        rows += 1;
    }
    assert_eq!(rows, 16, "8 rows read from each file");

    // the other filters, and a bad one
    let out = run(&[
        "results",
        "export",
        "--url",
        &url,
        "--file",
        "other.json",
        "--format",
        "jsonl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["study"], "other");
    assert_eq!(lines[1]["study"], Value::Null);
    let out = run(&[
        "results", "export", "--url", &url, "--status", "queued", "--format", "csv",
    ]);
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "the header only: {}",
        stdout(&out)
    );
    let r = c.orch().get("/results/export?format=xml");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("expected csv or jsonl"));
}

/// A file of `n` tiny tasks, written as a stream (not built in memory).
fn write_many(path: &Path, n: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(b"{\"tasks\": [\n").unwrap();
    for i in 0..n {
        let sep = if i + 1 == n { "" } else { "," };
        writeln!(
            out,
            r#"{{"task_id": "m{i:07}", "algorithm": "reference", "study": "big", "parameters": {{"num_particles": 20, "num_steps": 1, "seed": {i}}}}}{sep}"#
        )
        .unwrap();
    }
    out.write_all(b"]}\n").unwrap();
}

#[test]
fn exporting_a_million_rows_keeps_the_orchestrators_memory_flat() {
    const N: u64 = 1_000_000;
    // no workers: every task stays queued
    let mut c = Cluster::start(&[], &[]);
    let queue = c.path("task_queues");
    std::fs::create_dir_all(&queue).unwrap();
    let part = queue.join("big.json.part");
    write_many(&part, N);
    std::fs::rename(&part, queue.join("big.json")).unwrap();
    wait_until(LONG, "the million tasks stored", || {
        c.orch().get("/tasks?limit=1").json()["total"].as_u64() == Some(N)
    });
    // a fresh process, so that its peak is the export's, not the ingest's
    c.restart_orchestrator();
    let pid = c.orch().pid();
    // at start: its queue of a million tasks is still being read in
    let at_start = peak_rss_bytes(pid);
    let url = c.orch().url("");
    for format in ["csv", "parquet"] {
        let file = c.path(&format!("big.{format}"));
        let started = Instant::now();
        let out = orquesta()
            .args([
                "results", "export", "--url", &url, "--study", "big", "--format", format, "-o",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let peak = peak_rss_bytes(pid);
        eprintln!(
            "export of {N} rows as {format}: {:.1} s, {:.1} MB file; orchestrator VmHWM {:.1} MB (its queue of {N} \
             tasks included; {:.1} MB as it started listening)",
            started.elapsed().as_secs_f64(),
            std::fs::metadata(&file).unwrap().len() as f64 / 1e6,
            peak as f64 / 1e6,
            at_start as f64 / 1e6
        );
        assert!(
            peak < 300_000_000,
            "orchestrator VmHWM {peak} bytes after exporting {N} rows as {format}"
        );
        if format == "csv" {
            let lines = BufReader::new(std::fs::File::open(&file).unwrap())
                .lines()
                .count() as u64;
            assert_eq!(lines, N + 1, "a header and one row per task");
        } else {
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
            assert!(
                stderr(&out).contains(&format!("exported {N} rows")),
                "{}",
                stderr(&out)
            );
        }
    }
}
