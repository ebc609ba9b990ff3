//! One group commit: every job waiting, applied in one transaction and
//! answered after it. Each job is all or nothing, but a job almost never
//! fails, so the group first runs straight through with no savepoint (a
//! savepoint per job made SQLite copy every page a job touched into a
//! sub-journal, then write it to a temporary file: most of the writer's
//! time), with a task that started and ended within the group written once
//! ([`super::fold`]). Only if something fails is that transaction rolled
//! back and the group replayed job by job, each in its own savepoint,
//! exactly as written: a failed job is undone alone and the others commit.

use rusqlite::Connection;

use super::fold::{self, Folds};
use super::writer::{apply_ops, Job, Reply};
use super::{DbFault, StoreError};

/// Each job's answer, in order.
pub(super) type Replies = Vec<Result<Vec<Reply>, StoreError>>;

/// What a failed change is called: a full disk plainly, with the path
/// (noted for `/health`); anything else as SQLite says it.
pub(super) fn failure(fault: &DbFault, e: &rusqlite::Error, path: &str) -> String {
    if super::fault::is_full(e) {
        fault.note_full(path)
    } else {
        e.to_string()
    }
}

/// Applies `jobs` in one transaction; answers how the commit went and
/// each job's replies.
pub(super) fn commit(
    conn: &mut Connection,
    jobs: &[Job],
    fault: &DbFault,
    path: &str,
) -> (Result<(), String>, Replies) {
    let plan = fold::plan(jobs);
    match straight(conn, jobs, &plan) {
        Ok(replies) => (Ok(()), replies),
        Err(e) => {
            // nothing of the group is kept: replay it job by job, where
            // the job that fails is said and undone alone
            tracing::debug!(error = %e, jobs = jobs.len(), "a group commit is replayed job by job");
            one_by_one(conn, jobs, fault, path)
        }
    }
}

/// The whole group, no savepoint, folds applied: all or nothing.
fn straight(conn: &mut Connection, jobs: &[Job], plan: &fold::Plan<'_>) -> rusqlite::Result<Replies> {
    let tx = conn.transaction()?;
    let mut replies = Vec::with_capacity(jobs.len());
    for (j, job) in jobs.iter().enumerate() {
        replies.push(Ok(apply_ops(&tx, &job.ops, plan.of_job(j))?));
    }
    tx.commit()?;
    Ok(replies)
}

/// The group job by job, each in its own savepoint, nothing folded.
fn one_by_one(
    conn: &mut Connection,
    jobs: &[Job],
    fault: &DbFault,
    path: &str,
) -> (Result<(), String>, Replies) {
    let mut replies: Replies = Vec::with_capacity(jobs.len());
    let outcome = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        for job in jobs {
            // each job all-or-nothing inside the group's transaction
            tx.execute_batch("SAVEPOINT job")?;
            match apply_ops(&tx, &job.ops, Folds::NONE) {
                Ok(r) => {
                    tx.execute_batch("RELEASE job")?;
                    replies.push(Ok(r));
                }
                Err(e) => {
                    let e = fault.note(e);
                    if tx.is_autocommit() {
                        // SQLite rolled the whole transaction back
                        // itself (a full disk does): the group fails
                        return Err(e);
                    }
                    tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                    let said = failure(fault, &e, path);
                    tracing::error!(error = %said, "a database change failed and was rolled back");
                    replies.push(Err(StoreError::Failed(said)));
                }
            }
        }
        tx.commit()
    })()
    .map_err(|e| fault.note(e))
    .map_err(|e| failure(fault, &e, path));
    (outcome, replies)
}
