//! The proxy's view of its worker's health: the heartbeat, a refused
//! connection, the status fetched when it comes up, and marking it down
//! or draining.

use actix::prelude::*;

use super::*;

/// Why an address that answers `/health` but has no `GET /status` (404)
/// gets no tasks: it is not a worker.
pub(super) const NOT_A_WORKER: &str = "refused: this address answers as an orchestrator (perhaps this one), \
    not a worker (GET /status answered 404); fix the entry's host and port in config_workers.json";

impl WorkerProxy {
    /// A worker that has never answered: said once, then every
    /// [`NEVER_ANSWERED_EVERY`], with the command that starts it.
    pub(super) fn report_never_answered(&mut self, why: &str) {
        if self.ever_answered
            || self
                .never_answered_logged
                .is_some_and(|t| t.elapsed() < NEVER_ANSWERED_EVERY)
        {
            return;
        }
        self.never_answered_logged = Some(Instant::now());
        tracing::warn!(worker = %self.id, address = %self.entry.address(), %why,
            "worker {} at {} has never answered; is it started? `orquesta worker --worker-id {} --port {}`",
            self.id, self.entry.address(), self.id, self.entry.port);
    }

    /// The next heartbeat, after the interval in force then (it grows
    /// with the cluster: [`super::pace`]).
    pub(super) fn next_heartbeat(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.settings.pace.interval(), |act, ctx| {
            act.heartbeat(ctx);
            act.next_heartbeat(ctx);
        });
    }

    /// One heartbeat: `GET /health`, at most one in flight.
    pub(super) fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let timeout = self.settings.pace.timeout();
        if !self.ever_answered && self.last_ok.elapsed() > timeout {
            let secs = timeout.as_secs_f64();
            self.report_never_answered(&format!("no answer for {secs:.1} s"));
        }
        if self.last_ok.elapsed() > timeout {
            let secs = timeout.as_secs_f64();
            if self.up {
                self.mark_down(WorkerState::Down, format!("no answer for {secs:.1} s"));
            } else if !self.adopted.is_empty() {
                // adopted after a restart from a worker that never came back
                for (task_id, attempt_id) in std::mem::take(&mut self.adopted) {
                    let why = format!("worker {} has not answered for {secs:.1} s", self.id);
                    self.report(task_id, attempt_id, OutcomeKind::Lost(why));
                }
            }
        }
        if self.heartbeat_pending {
            return;
        }
        self.heartbeat_pending = true;
        http::health(&self.client, &self.base, timeout)
            .into_actor(self)
            .map(|res, act, ctx| {
                act.heartbeat_pending = false;
                if act.retired {
                    return;
                }
                if res.is_ok() {
                    act.ever_answered = true;
                }
                if !matches!(res, Ok(200) | Ok(503)) {
                    act.settings.metrics.heartbeat_failed(&act.id);
                }
                match res {
                    // 503 = draining: alive, but takes no tasks
                    Ok(200) => act.alive(ctx),
                    Ok(503) => {
                        act.last_ok = Instant::now();
                        if act.up {
                            act.mark_down(WorkerState::Draining, "shutting down".into());
                        }
                    }
                    // 409: it has work from the orchestrator of another
                    // data folder; alive, but not ours until that is done
                    Ok(409) => {
                        act.last_ok = Instant::now();
                        act.serves_another();
                    }
                    Ok(code) => {
                        act.last_ok = Instant::now();
                        if act.up {
                            act.mark_down(WorkerState::Down, format!("health answered {code}"));
                        }
                    }
                    Err(SendRequestError::Connect(e)) => act.refused(e.to_string(), ctx),
                    Err(_) => {} // no answer: judged by WORKER_TIMEOUT
                }
                // a check that goes on to GET /status ends with that
                if !act.status_pending {
                    act.settings.metrics.worker_checked(&act.id);
                }
            })
            .spawn(ctx);
    }

    /// The worker answered its health check.
    pub(super) fn alive(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.last_ok = Instant::now();
        self.peers.heartbeats.do_send(Heartbeat {
            worker_id: self.id.clone(),
            at: SystemTime::now(),
        });
        if !self.up {
            self.fetch_status(ctx);
        } else {
            self.poll_adopted(ctx);
            self.flush_acks(ctx);
        }
    }

    /// A refused connection marks the worker down at once, after one quick
    /// re-check (a restart in progress may refuse for a moment).
    pub(super) fn refused(&mut self, error: String, ctx: &mut Context<Self>) {
        if !self.up {
            let why = format!("connection refused: {error}");
            if !self.ever_answered && !self.refusal_told && !self.retired {
                // still `unknown`, but now with a reason: nobody listens
                // there, so a join with this id from elsewhere is not a
                // clash (the process was restarted at another port)
                self.refusal_told = true;
                self.peers.updates.do_send(WorkerUpdate {
                    worker_id: self.id.clone(),
                    state: WorkerState::Unknown,
                    reason: Some(why.clone()),
                    capacity: self.entry.capacity,
                    backlog_limit: 0,
                    kernels: self.entry.kernels(),
                    heartbeat: None,
                });
            }
            self.report_never_answered(&why);
            return;
        }
        http::health(&self.client, &self.base, Duration::from_secs(1))
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(200) => act.alive(ctx),
                _ => act.mark_down(WorkerState::Down, format!("connection refused: {error}")),
            })
            .spawn(ctx);
    }

    /// `GET /status`: the worker's own capacity and algorithms; then up.
    pub(super) fn fetch_status(&mut self, ctx: &mut Context<Self>) {
        if self.status_pending {
            return;
        }
        self.status_pending = true;
        let request = self.client.get(format!("{}/status", self.base)).send();
        async move {
            let mut resp = request.await.map_err(|e| Some(e.to_string()))?;
            let body = resp
                .body()
                .limit(1 << 20)
                .await
                .map_err(|e| Some(e.to_string()))?;
            match resp.status().as_u16() {
                401 => Err(None),
                200 => serde_json::from_slice::<StatusAnswer>(&body)
                    .map_err(|e| Some(format!("cannot read the status: {e}"))),
                404 => Err(Some(NOT_A_WORKER.to_string())),
                code => Err(Some(format!("GET /status answered {code}"))),
            }
        }
        .into_actor(self)
        .map(|res, act, ctx| {
            act.status_pending = false;
            if act.retired {
                return;
            }
            match res {
                Ok(status) => act.came_up(status, ctx),
                Err(None) => act.unauthorized(),
                Err(Some(e)) if e == NOT_A_WORKER => act.not_a_worker(),
                Err(Some(e)) => {
                    tracing::warn!(worker = %act.id, error = %e, "cannot read the worker's status")
                }
            }
            act.settings.metrics.worker_checked(&act.id);
        })
        .spawn(ctx);
    }

    /// The address answers, but not as a worker (an orchestrator, this
    /// one perhaps, has no `GET /status`): down with that reason on its
    /// row and one log line, not a warning at every heartbeat.
    pub(super) fn not_a_worker(&mut self) {
        if self.not_a_worker_told || self.retired {
            return;
        }
        self.not_a_worker_told = true;
        self.peers.updates.do_send(WorkerUpdate {
            worker_id: self.id.clone(),
            state: WorkerState::Down,
            reason: Some(NOT_A_WORKER.into()),
            capacity: self.entry.capacity,
            backlog_limit: 0,
            kernels: self.entry.kernels(),
            heartbeat: None,
        });
        tracing::error!(worker = %self.id, address = %self.entry.address(), "{NOT_A_WORKER}");
    }

    /// The worker wants a token this orchestrator does not have (or has
    /// another one): it is down and gets no tasks, with the reason on its
    /// row and one log line, until the tokens agree.
    pub(super) fn unauthorized(&mut self) {
        if self.up {
            self.mark_down(WorkerState::Down, UNAUTHORIZED.into());
        } else if !self.unauthorized_told && !self.retired {
            self.peers.updates.do_send(WorkerUpdate {
                worker_id: self.id.clone(),
                state: WorkerState::Down,
                reason: Some(UNAUTHORIZED.into()),
                capacity: self.entry.capacity,
                backlog_limit: 0,
                kernels: self.entry.kernels(),
                heartbeat: None,
            });
        }
        if !self.unauthorized_told {
            self.unauthorized_told = true;
            tracing::error!(worker = %self.id, address = %self.entry.address(), "{UNAUTHORIZED}");
        }
    }

    /// The worker serves another orchestrator (its `/health` answered 409
    /// to this one's id): down, with that reason, until it answers 200.
    fn serves_another(&mut self) {
        if self.up {
            self.mark_down(WorkerState::Down, SERVES_ANOTHER.into());
        } else if !self.serves_another_told && !self.retired {
            self.peers.updates.do_send(WorkerUpdate {
                worker_id: self.id.clone(),
                state: WorkerState::Down,
                reason: Some(SERVES_ANOTHER.into()),
                capacity: self.entry.capacity,
                backlog_limit: 0,
                kernels: self.entry.kernels(),
                heartbeat: None,
            });
        }
        if !self.serves_another_told {
            self.serves_another_told = true;
            tracing::warn!(worker = %self.id, address = %self.entry.address(), "{SERVES_ANOTHER}");
        }
    }

    pub(super) fn came_up(&mut self, status: StatusAnswer, ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        let (capacity, kernels) = agree(&self.entry, &status);
        if kernels.is_empty() {
            tracing::warn!(worker = %self.id, configured = ?self.entry.algorithms, offered = ?status.algorithms,
                "the worker offers none of its configured algorithms");
        }
        if status.worker_id != *self.entry.id {
            tracing::warn!(worker = %self.id, reported = %status.worker_id,
                "the worker at this address reports another id");
        }
        self.up = true;
        self.batching = status.max_backlog > 0;
        self.capacity = capacity;
        self.judged_running = 0;
        self.unauthorized_told = false;
        self.serves_another_told = false;
        self.not_a_worker_told = false;
        self.kernels = kernels.clone();
        self.peers.updates.do_send(WorkerUpdate {
            worker_id: self.id.clone(),
            state: WorkerState::Up,
            reason: None,
            capacity,
            backlog_limit: status.max_backlog,
            kernels,
            heartbeat: Some(SystemTime::now()),
        });
        self.poll_adopted(ctx);
    }

    /// Marks the worker down, its attempts lost; or draining (its own
    /// shutdown), where its attempts run on and answer as usual.
    pub(super) fn mark_down(&mut self, state: WorkerState, reason: String) {
        if self.retired {
            return; // its attempts went back at retirement; a successor may hold the id
        }
        let was_up = self.up;
        self.up = false;
        let why = format!("worker {} {state} ({reason})", self.id);
        self.peers.updates.do_send(WorkerUpdate {
            worker_id: self.id.clone(),
            state,
            reason: Some(reason),
            capacity: self.entry.capacity,
            backlog_limit: 0,
            kernels: if self.kernels.is_empty() {
                self.entry.kernels()
            } else {
                self.kernels.clone()
            },
            heartbeat: None,
        });
        if was_up && state != WorkerState::Draining {
            // what ran there is lost (an attempt); what was only sent
            // ahead never started, and goes back without counting
            let ids: Vec<TaskId> = self.in_flight.keys().cloned().collect();
            for (task_id, attempt_id, kind) in self.judge_cut_off(&ids, &why) {
                self.in_flight.remove(&task_id);
                self.report(task_id, attempt_id, kind);
            }
            for (task_id, attempt_id) in std::mem::take(&mut self.adopted) {
                self.report(task_id, attempt_id, OutcomeKind::Lost(why.clone()));
            }
        }
    }
}
