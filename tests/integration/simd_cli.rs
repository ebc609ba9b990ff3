//! `ORQUESTA_SIMD` as a user sets it: `orquesta bench sim` says which
//! vector width it ran, honours a forced one, refuses an unknown one by
//! name, and `orquesta sim` gives the same bits at every width.

use serde_json::Value;

use crate::common::{orquesta, stderr, stdout};

fn bench_with(simd: &str) -> std::process::Output {
    orquesta()
        .env("ORQUESTA_SIMD", simd)
        .args([
            "bench",
            "sim",
            "--kernels",
            "optimized",
            "--sizes",
            "100",
            "--seconds",
            "0.02",
            "--threads",
            "1",
        ])
        .output()
        .expect("the orquesta binary runs")
}

#[test]
fn bench_sim_names_the_width_it_ran() {
    let out = bench_with("sse2");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("optimized kernel vectors: sse2"), "{err}");
    assert!(stdout(&out).contains("M particle-steps/s"));

    let out = bench_with("avx9");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ORQUESTA_SIMD=\"avx9\" is not a vector width"),
        "{err}"
    );

    if std::arch::is_x86_feature_detected!("avx2") {
        let out = bench_with("avx2");
        assert!(
            stderr(&out).contains("optimized kernel vectors: avx2"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn sim_gives_the_same_result_at_every_width() {
    let result = |simd: &str| {
        let out = orquesta()
            .env("ORQUESTA_SIMD", simd)
            .args([
                "sim",
                "--particles",
                "500",
                "--steps",
                "200",
                "--seed",
                "9",
                "--threads",
                "2",
            ])
            .output()
            .expect("the orquesta binary runs");
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
        let m = &v["result"]["metrics"];
        // JSON prints the shortest text that reads back to the same f64,
        // so equal text is equal bits
        [
            "potential_energy_final",
            "kinetic_energy_final",
            "max_energy_drift",
            "position_checksum",
        ]
        .map(|k| m[k].to_string())
    };
    let base = result("sse2");
    let mut widths = vec!["auto"];
    if std::arch::is_x86_feature_detected!("avx2") {
        widths.push("avx2");
    }
    for w in widths {
        assert_eq!(base, result(w), "ORQUESTA_SIMD={w}");
    }
}
