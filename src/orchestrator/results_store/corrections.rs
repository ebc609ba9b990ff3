//! A corrected result (replication found the recorded one wrong:
//! `corrected_from`, `task_queue/verify.rs`) takes the place of the wrong
//! record where it was written, so that nothing in `results/` still
//! carries the contradicted numbers:
//!
//! - the wrong record not yet written (still buffered): replaced in the
//!   buffer, and written once, corrected;
//! - written to a `task_results_*.json`: that file is rewritten with the
//!   corrected record in its place (temp file + rename, so a reader sees
//!   the old file or the new one, never a mix), then marked written;
//! - a crash between the correction's commit and the rewrite: at start-up
//!   the corrected result is unwritten and its file exists, so the file is
//!   rewritten then ([`rewrite_record`] from `RecoverResults`).
//!
//! Corrections wait while a flush is under way, so a record being written
//! is never corrected behind its back.

use std::path::Path;

use actix::prelude::*;
use serde_json::Value;

use super::ResultsStore;
use crate::model::TaskResult;
use crate::util::fs::write_atomic;

/// Whether `result` corrects a recorded one.
pub(super) fn is_correction(result: &TaskResult) -> bool {
    result.extra.contains_key("corrected_from")
}

/// Rewrites the results file at `path` with `result` in the place of the
/// record of the same task (added if the file has none).
pub(super) fn rewrite_record(path: &Path, result: &TaskResult) -> Result<(), String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut records: Vec<Value> = serde_json::from_slice(&text).map_err(|e| format!("{shown}: {e}"))?;
    let corrected = serde_json::to_value(result).map_err(|e| e.to_string())?;
    let same = |r: &Value| r.get("task_id").and_then(Value::as_str) == Some(result.task_id.as_str());
    match records.iter_mut().find(|r| same(r)) {
        Some(r) => *r = corrected,
        None => records.push(corrected),
    }
    let text = serde_json::to_vec_pretty(&records).map_err(|e| e.to_string())?;
    write_atomic(path, &text).map_err(|e| format!("{shown}: {e}"))
}

impl ResultsStore {
    /// Puts the corrections received in the place of the wrong records
    /// (see the module doc); at each flush tick, never during a flush.
    pub(super) fn apply_corrections(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.corrections.is_empty() {
            return;
        }
        let Some((_, _, read)) = self.sources.clone() else {
            return;
        };
        let mut written = Vec::new();
        for result in std::mem::take(&mut self.corrections) {
            match self.buffer.iter_mut().find(|r| r.task_id == result.task_id) {
                // never written: written once, corrected
                Some(wrong) => *wrong = result,
                None => written.push(result),
            }
        }
        if written.is_empty() {
            return;
        }
        let store = self.store.clone();
        async move {
            let mut unwritten = Vec::new();
            for result in written {
                let read = std::sync::Arc::clone(&read);
                let id = result.task_id.clone();
                let done = actix_rt::task::spawn_blocking(move || {
                    let file = read.task(id.as_str()).ok().flatten().and_then(|(t, _)| t.results_file);
                    let rewritten = match &file {
                        Some(f) if Path::new(f).exists() => match rewrite_record(Path::new(f), &result) {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::error!(task = %result.task_id, error = %e,
                                    "cannot rewrite a results file with a corrected result; written to a new one");
                                false
                            }
                        },
                        _ => false,
                    };
                    (result, file.filter(|_| rewritten))
                })
                .await;
                match done {
                    Ok((result, Some(f))) => {
                        tracing::info!(task = %result.task_id, file = %f, "results file rewritten with a corrected result");
                        if let Err(e) = store.mark_written(&f).await {
                            tracing::error!(error = %e, "cannot mark a rewritten results file; a restart checks it");
                        }
                    }
                    Ok((result, None)) => unwritten.push(result),
                    Err(e) => tracing::error!(error = %e, "a correction was lost on its way to results/"),
                }
            }
            unwritten
        }
        .into_actor(self)
        .map(|unwritten, act, _| act.buffer.extend(unwritten))
        .spawn(ctx);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{RunStatus, TaskId};

    fn result(id: &str, energy: f64) -> TaskResult {
        TaskResult::for_test(
            &TaskId::trusted(id),
            json!({"num_particles": 16}),
            RunStatus::Completed,
            json!({ "total_energy_final": energy }),
        )
    }

    #[test]
    fn a_corrected_record_takes_the_wrong_ones_place_in_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task_results_x.json");
        let records = vec![result("a", 1.0), result("wrong", 9.0), result("c", 3.0)];
        std::fs::write(&path, serde_json::to_vec_pretty(&records).unwrap()).unwrap();
        let mut fixed = result("wrong", -1.5);
        fixed.set_corrected_from("liar");
        assert!(is_correction(&fixed) && !is_correction(&records[1]));
        rewrite_record(&path, &fixed).unwrap();
        let back: Vec<Value> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let ids: Vec<&str> = back.iter().map(|r| r["task_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "wrong", "c"], "in its place, once");
        assert_eq!(back[1]["result"]["metrics"]["total_energy_final"], -1.5);
        assert_eq!(back[1]["corrected_from"], "liar");
        assert_eq!(back[0]["result"]["metrics"]["total_energy_final"], 1.0);
        assert!(!String::from_utf8(std::fs::read(&path).unwrap())
            .unwrap()
            .contains("9.0"));
        // a file that cannot be read is an error naming it, and is left alone
        let bad = dir.path().join("task_results_bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let e = rewrite_record(&bad, &fixed).unwrap_err();
        assert!(e.contains("task_results_bad.json"), "{e}");
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), "not json");
    }
}
