//! A study's report (issue 20): `GET /studies` lists the study with its
//! counts and swept parameters; `GET /studies/{name}/report` is one
//! self-contained HTML page whose plotted points (its embedded JSON) are
//! the mean and standard error over replicas of the export's rows;
//! `orquesta report` writes the same page; headless Chromium draws it
//! (the screenshot goes to the test's folder, and to
//! `$ORQUESTA_SCREENSHOT_TO` when set: how `docs/img/report.png` is made).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::{run, stderr, wait_until, Cluster, WorkerSpec};
use crate::dashboard::browser::{require_browser, Browser};

const LONG: Duration = Duration::from_secs(300);

/// The JSON a report page embeds.
fn report_data(html: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"report-data\">";
    let start = html.find(open).expect("the page embeds its data") + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

/// Mean and standard error (n − 1) of `values`.
fn mean_sem(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sem = (values.len() > 1).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (ss / (n - 1.0)).sqrt() / n.sqrt()
    });
    (mean, sem)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn a_study_report_plots_the_means_of_the_export_and_a_browser_draws_it() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 2), WorkerSpec::new("w2", 2)], &[]);
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
        "num_steps=40",
        "--set",
        "thermo_every=10",
        "--replicas",
        "3",
        "--study",
        "rho",
        "--seed",
        "9",
        "--prefix",
        "rho",
        "-o",
        part.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::rename(&part, queue.join("rho.json")).unwrap();
    c.wait_count("completed", 12, LONG);

    // GET /studies
    let studies = c.orch().get("/studies").json();
    let s = &studies["studies"][0];
    assert_eq!(s["name"], "rho", "{studies}");
    assert_eq!(s["tasks"], 12);
    assert_eq!(s["by_status"]["completed"], 12);
    assert_eq!(s["swept"], serde_json::json!(["density", "temperature"]));
    assert_eq!(s["report"], "/studies/rho/report");

    // the page, and its points against the export's rows
    let r = c.orch().get("/studies/rho/report");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    let html = r.text();
    for external in ["<link", " src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "the page loads nothing ({external})");
    }
    let data = report_data(&html);
    assert_eq!(data["completed"], 12);
    let export = c.orch().get("/results/export?format=jsonl&study=rho");
    assert_eq!(export.status, 200);
    let rows: Vec<Value> = export
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    let mut compared = 0;
    for plot in data["plots"].as_array().unwrap() {
        let (observable, x) = (
            plot["observable"].as_str().unwrap(),
            plot["parameter"].as_str().unwrap(),
        );
        let other = if x == "density" { "temperature" } else { "density" };
        for line in plot["lines"].as_array().unwrap() {
            let fixed = line["fixed"][other].as_f64().unwrap();
            for point in line["points"].as_array().unwrap() {
                let at = point["x"].as_f64().unwrap();
                let values: Vec<f64> = rows
                    .iter()
                    .filter(|r| r[x].as_f64() == Some(at) && r[other].as_f64() == Some(fixed))
                    .map(|r| r[observable].as_f64().unwrap())
                    .collect();
                assert_eq!(
                    values.len(),
                    3,
                    "{observable} at {x}={at}, {other}={fixed}: 3 replicas"
                );
                assert_eq!(point["n"], 3);
                let (mean, sem) = mean_sem(&values);
                let (got_mean, got_sem) = (point["mean"].as_f64().unwrap(), point["sem"].as_f64().unwrap());
                assert!(
                    close(got_mean, mean),
                    "{observable} {x}={at}: {got_mean} against {mean}"
                );
                assert!(
                    close(got_sem, sem.unwrap()),
                    "{observable} {x}={at}: sem {got_sem} against {sem:?}"
                );
                compared += 1;
            }
        }
    }
    // 8 observables (5 final values, 3 second-half means) × 2 swept × 4 points
    assert_eq!(compared, 8 * 2 * 4, "{data}");
    assert_eq!(
        data["thermo"]["rows"].as_array().unwrap().len(),
        5,
        "steps 0..=40 every 10"
    );
    let timed: u64 = data["scaling"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            l["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["n"].as_u64().unwrap())
        })
        .sum();
    assert_eq!(timed, 12, "every task in the scaling plot, per kernel and worker");
    let figures = html.matches("<figure").count();
    assert_eq!(
        figures,
        8 * 2 + 3 + 1,
        "observables, the thermo series, the scaling"
    );

    // the wrong study, and a bad name
    let missing = c.orch().get("/studies/nope/report");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("GET /studies"));
    assert_eq!(c.orch().get("/studies/a%20b/report").status, 400);

    // orquesta report writes the same page
    let file = c.path("rho.html");
    let url = c.orch().url("");
    let out = run(&[
        "report",
        "--url",
        &url,
        "--study",
        "rho",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), html);
    let out = run(&[
        "report",
        "--url",
        &url,
        "--study",
        "nope",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));

    // a real browser draws it
    let Some(browser) = require_browser("study_report::a_study_report_plots_the_means_of_the_export") else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::open(&browser, profile.path(), &c.orch().url("/studies/rho/report"));
    wait_until(Duration::from_secs(60), "the report drawn", || {
        b.eval("document.querySelectorAll('figure svg').length") == serde_json::json!(figures)
    });
    let width = b.eval("document.querySelector('figure svg').getBoundingClientRect().width");
    assert!(width.as_f64().unwrap() > 100.0, "charts have a size: {width}");
    let points = b.eval("JSON.parse(document.getElementById('report-data').textContent).plots.length");
    assert_eq!(points, serde_json::json!(16));
    let png = b.screenshot();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    std::fs::write(c.path("report.png"), &png).unwrap();
    if let Some(to) = std::env::var_os("ORQUESTA_SCREENSHOT_TO") {
        std::fs::write(&to, &png).unwrap();
        eprintln!("screenshot saved to {}", PathBuf::from(to).display());
    }
}
