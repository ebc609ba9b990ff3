//! The requests `api::allocations` sends the [`Allocator`]: list, add,
//! pause or resume, and remove a queue, and why a change is refused.

use actix::prelude::*;

use super::*;

/// Why a change of the queues was refused.
#[derive(Debug, thiserror::Error)]
pub enum AllocationRefused {
    #[error("invalid allocation queue: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("an allocation queue named {0:?} exists already; remove it first or pick another name")]
    Exists(String),
    #[error("no allocation queue named {0:?}; GET /allocations lists them")]
    Unknown(String),
    #[error("{0}")]
    Store(#[from] crate::orchestrator::store::StoreError),
}

/// Sent by `GET /allocations`: every queue and its jobs.
#[derive(Message)]
#[rtype(result = "AllocationList")]
pub struct ListAllocations;

impl Handler<ListAllocations> for Allocator {
    type Result = MessageResult<ListAllocations>;
    fn handle(&mut self, _: ListAllocations, _: &mut Self::Context) -> Self::Result {
        MessageResult(AllocationList {
            allocations: self.queues.iter().map(|(n, q)| self.view(n, q)).collect(),
            join_url: self.settings.join_url.clone(),
        })
    }
}

/// Sent by `POST /allocations`: a new queue; answered after the commit.
#[derive(Message)]
#[rtype(result = "Result<Allocation, AllocationRefused>")]
pub struct AddAllocation(pub AllocationSpec);

impl Handler<AddAllocation> for Allocator {
    type Result = ResponseActFuture<Self, Result<Allocation, AllocationRefused>>;
    fn handle(&mut self, msg: AddAllocation, _: &mut Self::Context) -> Self::Result {
        let plan = match check_spec(&msg.0) {
            Ok(p) => p,
            Err(problems) => return Box::pin(actix::fut::ready(Err(AllocationRefused::Invalid(problems)))),
        };
        let name = plan.spec.name.clone();
        if self.queues.contains_key(&name) {
            return Box::pin(actix::fut::ready(Err(AllocationRefused::Exists(name))));
        }
        let spec_json = serde_json::to_string(&plan.spec).unwrap_or_default();
        let saved = self
            .store
            .persist_now(vec![Change::Allocation(AllocationChange::Added {
                name: name.clone(),
                spec: spec_json,
                at: unix_now(),
            })]);
        Box::pin(actix::fut::wrap_future(saved).map(move |res, act: &mut Self, _| {
            res?;
            if act.queues.contains_key(&name) {
                return Err(AllocationRefused::Exists(name));
            }
            tracing::info!(queue = %name, kind = plan.spec.kind.as_str(), max_jobs = plan.spec.max_jobs,
                "allocation queue added");
            act.queues.insert(name.clone(), QueueRun::new(plan, false));
            Ok(act.view(&name, &act.queues[&name]))
        }))
    }
}

/// Sent by `POST /allocations/{name}/pause` and `/resume`.
#[derive(Message)]
#[rtype(result = "Result<Allocation, AllocationRefused>")]
pub struct PauseAllocation {
    pub name: String,
    pub paused: bool,
}

impl Handler<PauseAllocation> for Allocator {
    type Result = ResponseActFuture<Self, Result<Allocation, AllocationRefused>>;
    fn handle(&mut self, msg: PauseAllocation, _: &mut Self::Context) -> Self::Result {
        let PauseAllocation { name, paused } = msg;
        if self.queues.get(&name).is_none_or(|q| q.removing) {
            return Box::pin(actix::fut::ready(Err(AllocationRefused::Unknown(name))));
        }
        let saved = self
            .store
            .persist_now(vec![Change::Allocation(AllocationChange::Paused {
                name: name.clone(),
                paused,
            })]);
        Box::pin(actix::fut::wrap_future(saved).map(move |res, act: &mut Self, _| {
            res?;
            let q = act
                .queues
                .get_mut(&name)
                .ok_or_else(|| AllocationRefused::Unknown(name.clone()))?;
            q.paused = paused;
            if !paused {
                // resuming is a person's word that the cause is fixed
                q.backoff_until = None;
                q.failures_in_a_row = 0;
            }
            tracing::info!(queue = %name, paused, "allocation queue paused or resumed");
            Ok(act.view(&name, &act.queues[&name]))
        }))
    }
}

/// Sent by `DELETE /allocations/{name}`: the queue goes, its jobs are cancelled.
#[derive(Message)]
#[rtype(result = "Result<Allocation, AllocationRefused>")]
pub struct RemoveAllocation(pub String);

impl Handler<RemoveAllocation> for Allocator {
    type Result = ResponseActFuture<Self, Result<Allocation, AllocationRefused>>;
    fn handle(&mut self, msg: RemoveAllocation, _: &mut Self::Context) -> Self::Result {
        let name = msg.0;
        if self.queues.get(&name).is_none_or(|q| q.removing) {
            return Box::pin(actix::fut::ready(Err(AllocationRefused::Unknown(name))));
        }
        let saved = self
            .store
            .persist_now(vec![Change::Allocation(AllocationChange::Removed {
                name: name.clone(),
            })]);
        Box::pin(actix::fut::wrap_future(saved).map(move |res, act: &mut Self, _| {
            res?;
            let q = act.queues.get_mut(&name).ok_or_else(|| AllocationRefused::Unknown(name.clone()))?;
            q.removing = true;
            tracing::info!(queue = %name, jobs = q.alive_jobs().count(), "allocation queue removed; cancelling its jobs");
            Ok(act.view(&name, &act.queues[&name]))
        }))
    }
}
