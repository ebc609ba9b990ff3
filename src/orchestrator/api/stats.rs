//! `GET /stats` and `GET /stats/performance`: the orchestrator at a
//! glance, as [`crate::protocol::stats`] types.

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use super::{blocking, OrchestratorApi};
use crate::http::error::{mailbox, resource, ApiError};
use crate::model::WorkerId;
use crate::orchestrator::board::WorkerInfo;
use crate::orchestrator::membership::StrategyName;
use crate::orchestrator::task_queue::QueueStats;
use crate::protocol::stats::{Performance, Stats, TaskCounts, WorkerPerformance, WorkerSummary};

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(stats, performance))]
pub struct Doc;

/// Registers `/stats` and `/stats/performance`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/stats").route(web::get().to(stats)))
        .service(resource("/stats/performance").route(web::get().to(performance)));
}

/// The workers together: slots up, attempts in flight, utilisation.
pub(super) fn worker_summary(workers: &[WorkerInfo]) -> WorkerSummary {
    let capacity_up: usize = workers.iter().filter(|w| w.up).map(|w| w.capacity).sum();
    let in_flight: usize = workers.iter().map(|w| w.in_flight).sum();
    let running: usize = workers.iter().filter(|w| w.up).map(|w| w.running).sum();
    WorkerSummary {
        total: workers.len(),
        up: workers.iter().filter(|w| w.up).count(),
        capacity_up,
        in_flight,
        running,
        // slots busy, not attempts in flight: the tasks sent ahead to a
        // worker wait there for a slot and would count it busy many times
        utilisation: if capacity_up > 0 {
            (running as f64 / capacity_up as f64).min(1.0)
        } else {
            0.0
        },
    }
}

/// `GET /stats`: the orchestrator at a glance.
#[utoipa::path(get, path = "/stats", tag = "stats",
    responses((status = 200, description = "the orchestrator at a glance", body = Stats)))]
async fn stats(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let read = Arc::clone(&api.read);
    let ((by_status, by_priority), reused) =
        blocking(move || Ok((read.counts()?, read.reused_count()?))).await?;
    let live = api.queue.send(QueueStats).await.map_err(mailbox)?;
    let workers = api.workers.list();
    let load_balancing_algorithm = api.lb.send(StrategyName).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(Stats {
        tasks: TaskCounts {
            reused,
            ..TaskCounts::new(&by_status, &by_priority)
        },
        workers: worker_summary(&workers),
        queue: live.queue,
        since_start: live.since_start,
        throughput: live.throughput,
        uptime_seconds: api.started.elapsed().as_secs_f64(),
        load_balancing_algorithm: load_balancing_algorithm.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// `GET /stats/performance`: throughput, queue wait and execution time per
/// algorithm and per worker, utilisation.
#[utoipa::path(get, path = "/stats/performance", tag = "stats",
    responses((status = 200, description = "throughput, waits and execution times", body = Performance)))]
async fn performance(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let live = api.queue.send(QueueStats).await.map_err(mailbox)?;
    if !live.performance_monitoring {
        return Ok(HttpResponse::Ok().json(Performance::<_, ()> {
            performance_monitoring: false,
            note: Some("PERFORMANCE_MONITORING=false: only throughput is collected".into()),
            throughput: live.throughput,
            queue_wait_seconds: None,
            execution_time_seconds: None,
            execution_time_by_worker_seconds: None,
            utilisation: None,
            workers: None,
        }));
    }
    let workers = api.workers.list();
    Ok(HttpResponse::Ok().json(Performance {
        performance_monitoring: true,
        note: None,
        throughput: live.throughput,
        queue_wait_seconds: Some(live.queue_wait_seconds),
        execution_time_seconds: Some(live.execution_time_seconds),
        execution_time_by_worker_seconds: Some(live.execution_time_by_worker_seconds),
        utilisation: Some(worker_summary(&workers)),
        workers: Some(
            workers
                .iter()
                .map(|w| WorkerPerformance {
                    id: WorkerId::from(w.id.as_str()),
                    load: w.load,
                    in_flight: w.in_flight,
                    capacity: w.capacity,
                    tasks_completed: w.tasks_completed,
                    mean_execution_time: w.mean_execution_time,
                })
                .collect(),
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(up: bool, capacity: usize, running: usize, backlog: usize) -> WorkerInfo {
        WorkerInfo {
            up,
            capacity,
            running,
            backlog,
            in_flight: running + backlog,
            ..WorkerInfo::default()
        }
    }

    #[test]
    fn utilisation_is_the_share_of_busy_slots_not_of_tasks_sent_ahead() {
        // two slots, both busy, thirteen tasks waiting there: fully used,
        // not 750% (what in_flight / capacity said)
        let s = worker_summary(&[worker(true, 2, 2, 13), worker(false, 4, 0, 0)]);
        assert_eq!((s.total, s.up, s.capacity_up), (2, 1, 2));
        assert_eq!((s.running, s.in_flight), (2, 15));
        assert_eq!(s.utilisation, 1.0);
        let s = worker_summary(&[worker(true, 4, 1, 3), worker(true, 4, 0, 0)]);
        assert_eq!(s.utilisation, 1.0 / 8.0);
        assert_eq!(worker_summary(&[worker(false, 2, 0, 0)]).utilisation, 0.0);
    }
}
