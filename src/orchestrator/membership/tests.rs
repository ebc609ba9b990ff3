//! Membership unit tests: placement, strategies, membership changes.

use std::time::Duration;

use super::*;

fn entry(id: &str, port: u16) -> WorkerEntry {
    WorkerEntry {
        id: id.into(),
        host: "127.0.0.1".into(),
        port,
        capacity: 2,
        algorithms: vec!["python".into()],
        tls: false,
    }
}

#[test]
fn the_board_shows_every_worker_in_configuration_order() {
    let lb = Membership::new(&[entry("b", 2), entry("a", 1)], Balancing::RoundRobin);
    let board = lb.board();
    let ids: Vec<String> = board.list().into_iter().map(|w| w.id).collect();
    assert_eq!(ids, ["b", "a"]);
    let a = board.get("a").unwrap();
    assert_eq!(
        (a.state, a.state_reason.as_deref(), a.up),
        (WorkerState::Unknown, None, false)
    );
    assert!(board.get("c").is_none());
}

#[test]
fn state_and_reason_are_apart_on_the_wire_and_together_in_explanations() {
    actix_rt::System::new().block_on(async {
        let t = Cluster::wired(&[entry("w", 1)], Balancing::RoundRobin).await;
        t.lb.send(WorkerUpdate {
            worker_id: WorkerId::new("w"),
            state: WorkerState::Down,
            reason: Some("no answer for 30.0 s".into()),
            capacity: 2,
            backlog_limit: 0,
            kernels: vec!["reference".into()],
            heartbeat: None,
        })
        .await
        .unwrap();
        let row = serde_json::to_value(t.board.get("w").unwrap()).unwrap();
        assert_eq!(row["state"], "down");
        assert_eq!(row["state_reason"], "no answer for 30.0 s");
        let why = t.core.send(ExplainNow("reference")).await.unwrap();
        assert_eq!(why.per_worker[0].reason, "is down (no answer for 30.0 s)");
    });
}

/// The core's side as these tests need it: the [`Loads`] membership feeds
/// with rosters, placed on and released by the tests, publishing loads
/// and telling membership of idle workers as TaskQueue does.
pub(super) struct TestCore {
    loads: Loads,
    board: WorkerBoard,
    lb: Option<Addr<Membership>>,
    /// Each roster told: whether it was the whole list, and its views.
    told: Vec<(bool, usize)>,
}

/// The rosters the core was told so far.
#[derive(Message)]
#[rtype(result = "Vec<(bool, usize)>")]
pub(super) struct RostersTold;

impl Handler<RostersTold> for TestCore {
    type Result = MessageResult<RostersTold>;
    fn handle(&mut self, _: RostersTold, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.told.clone())
    }
}

impl Actor for TestCore {
    type Context = Context<Self>;
}

impl TestCore {
    fn publish(&self, id: &WorkerId) {
        if let Some(row) = self.loads.row(id) {
            self.board.publish_load(id, row);
        }
    }

    fn idle(&self, ids: Vec<WorkerId>) {
        for worker_id in ids {
            if let Some(lb) = &self.lb {
                lb.do_send(WorkerIdle { worker_id });
            }
        }
    }
}

impl Handler<Roster> for TestCore {
    type Result = ();
    fn handle(&mut self, msg: Roster, _: &mut Self::Context) {
        self.told.push((msg.full, msg.views.len()));
        let ids: Vec<WorkerId> = msg.views.iter().map(|v| v.id.clone()).collect();
        let idle = if msg.full {
            self.loads.roster(msg.views)
        } else {
            self.loads.changes(msg.views)
        };
        for id in &ids {
            self.publish(id);
        }
        self.idle(idle);
    }
}

impl Handler<WorkerFull> for TestCore {
    type Result = ();
    fn handle(&mut self, _: WorkerFull, _: &mut Self::Context) {}
}

impl Handler<AttemptOutcome> for TestCore {
    type Result = ();
    fn handle(&mut self, _: AttemptOutcome, _: &mut Self::Context) {}
}

impl Handler<crate::orchestrator::task_queue::AttemptsStarted> for TestCore {
    type Result = ();
    fn handle(&mut self, _: crate::orchestrator::task_queue::AttemptsStarted, _: &mut Self::Context) {}
}

impl Handler<crate::orchestrator::worker_proxy::TakenBack> for TestCore {
    type Result = ();
    fn handle(&mut self, _: crate::orchestrator::worker_proxy::TakenBack, _: &mut Self::Context) {}
}

/// Place these tasks now.
#[derive(Message)]
#[rtype(result = "Vec<Option<WorkerId>>")]
pub(super) struct PlaceNow(pub Vec<ToPlace>);

impl Handler<PlaceNow> for TestCore {
    type Result = MessageResult<PlaceNow>;
    fn handle(&mut self, msg: PlaceNow, _: &mut Self::Context) -> Self::Result {
        let out = self.loads.place(&msg.0, crate::util::time::unix_now());
        for w in out.iter().flatten() {
            self.publish(w);
        }
        MessageResult(out)
    }
}

/// An attempt on this worker ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ReleaseNow(pub WorkerId, pub Ended, pub Option<TaskSize>);

impl Handler<ReleaseNow> for TestCore {
    type Result = ();
    fn handle(&mut self, msg: ReleaseNow, _: &mut Self::Context) {
        let r = self
            .loads
            .release(&msg.0, msg.1, msg.2, crate::util::time::unix_now());
        self.publish(&msg.0);
        if r.idle {
            self.idle(vec![msg.0]);
        }
    }
}

/// Why a task of this kernel waits.
#[derive(Message)]
#[rtype(result = "Explanation")]
pub(super) struct ExplainNow(pub &'static str);

impl Handler<ExplainNow> for TestCore {
    type Result = MessageResult<ExplainNow>;
    fn handle(&mut self, msg: ExplainNow, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.loads.explain(msg.0, crate::util::time::unix_now()))
    }
}

/// Membership and a core wired together, as the orchestrator wires them.
pub(super) struct Cluster {
    pub lb: Addr<Membership>,
    pub core: Addr<TestCore>,
    pub board: WorkerBoard,
}

impl Cluster {
    pub(super) async fn wired(entries: &[WorkerEntry], balancing: Balancing) -> Self {
        let lb = Membership::new(entries, balancing);
        let board = lb.board();
        let lb = lb.start();
        let core = TestCore {
            loads: Loads::new(strategy(balancing)),
            board: board.clone(),
            lb: Some(lb.clone()),
            told: Vec::new(),
        }
        .start();
        lb.send(Wire {
            core: core.clone().recipient(),
            full: core.clone().recipient(),
            proxies: Vec::new(),
            outcomes: core.clone().recipient(),
            started: core.clone().recipient(),
            took_back: core.clone().recipient(),
            settings: crate::orchestrator::worker_proxy::ProxySettings::for_tests(
                Duration::from_secs(60),
                Duration::from_secs(60),
            ),
            store: None,
            limits: Default::default(),
        })
        .await
        .unwrap();
        let t = Self { lb, core, board };
        t.settle().await;
        t
    }

    /// Until every message between membership and the core has been
    /// handled (each mailbox is first in, first out).
    pub(super) async fn settle(&self) {
        for _ in 0..3 {
            self.core.send(ExplainNow("reference")).await.unwrap();
            self.lb.send(Workers).await.unwrap();
        }
    }

    /// Reports worker `id` up with `capacity` slots and `kernels`, taking
    /// no work ahead (placements fill slots only).
    pub(super) async fn report_up(&self, id: &str, capacity: usize, kernels: Vec<&'static str>) {
        self.lb
            .send(WorkerUpdate {
                worker_id: WorkerId::new(id),
                state: WorkerState::Up,
                reason: None,
                capacity,
                backlog_limit: 0,
                kernels: kernels.into_iter().map(Into::into).collect(),
                heartbeat: None,
            })
            .await
            .unwrap();
        self.settle().await;
    }

    pub(super) async fn assign(&self, tasks: Vec<ToPlace>) -> Vec<Option<String>> {
        self.settle().await;
        let out = self.core.send(PlaceNow(tasks)).await.unwrap();
        out.into_iter().map(|w| w.map(|w| w.to_string())).collect()
    }

    pub(super) async fn release(&self, worker: &str, ended: Ended, size: Option<TaskSize>) {
        self.core
            .send(ReleaseNow(WorkerId::new(worker), ended, size))
            .await
            .unwrap();
        self.settle().await;
    }
}

/// A wired cluster whose workers `up` are reported up.
async fn wired(entries: &[WorkerEntry], up: &[&str]) -> Cluster {
    let t = Cluster::wired(entries, Balancing::LeastLoaded).await;
    for id in up {
        t.report_up(id, 1, vec!["reference"]).await;
    }
    t
}

async fn place(t: &Cluster, avoid: &[&str]) -> Option<String> {
    let avoid = avoid.iter().map(|a| WorkerId::new(a)).collect();
    let mut out = t
        .assign(vec![ToPlace {
            kernel: "reference".into(),
            avoid,
            priority: crate::model::Priority::Medium,
            size: (100, 10),
        }])
        .await;
    out.pop().unwrap()
}

fn one(id: &str, port: u16) -> WorkerEntry {
    WorkerEntry {
        capacity: 1,
        ..entry(id, port)
    }
}

#[test]
fn a_retry_avoids_the_worker_that_failed_it_while_another_can_take_it() {
    actix_rt::System::new().block_on(async {
        let t = wired(&[one("a", 1), one("b", 2)], &["a", "b"]).await;
        let lb = &t.lb;
        // least_loaded would pick a (first); a failed the task: b
        assert_eq!(place(&t, &["a"]).await.as_deref(), Some("b"));
        // b is full now: wait for it rather than go back to a
        assert_eq!(place(&t, &["a"]).await, None);
        assert_eq!(place(&t, &[]).await.as_deref(), Some("a"));
        for w in ["a", "b"] {
            t.release(w, Ended::Nothing, None).await;
        }
        // b drained: a is the only capable worker, so back to a
        lb.send(DrainWorker { id: "b".into() }).await.unwrap();
        assert_eq!(place(&t, &["a"]).await.as_deref(), Some("a"));
    });
}

#[test]
fn a_drained_worker_takes_nothing_until_resumed() {
    actix_rt::System::new().block_on(async {
        let t = wired(&[one("a", 1)], &["a"]).await;
        let (lb, board) = (&t.lb, &t.board);
        assert_eq!(place(&t, &[]).await.as_deref(), Some("a"));
        let state = lb.send(DrainWorker { id: "a".into() }).await.unwrap();
        assert_eq!(state, Some(WorkerState::Draining), "a task still runs");
        t.release("a", Ended::Nothing, None).await;
        assert_eq!(board.get("a").unwrap().state, WorkerState::Drained);
        assert_eq!(place(&t, &[]).await, None);
        let state = lb.send(ResumeWorker { id: "a".into() }).await.unwrap();
        assert_eq!(state, Some(WorkerState::Up));
        assert_eq!(place(&t, &[]).await.as_deref(), Some("a"));
        assert_eq!(lb.send(DrainWorker { id: "zz".into() }).await.unwrap(), None);
    });
}

#[test]
fn a_config_edit_adds_changes_and_drains_out() {
    actix_rt::System::new().block_on(async {
        let t = wired(&[one("a", 1), one("b", 2)], &["a", "b"]).await;
        let (lb, board) = (&t.lb, &t.board);
        assert_eq!(place(&t, &["a"]).await.as_deref(), Some("b"));
        let wider = WorkerEntry {
            capacity: 3,
            ..one("a", 1)
        };
        lb.send(ApplyConfig {
            entries: vec![one("c", 3), wider.clone()],
        })
        .await
        .unwrap();
        t.settle().await;
        let ids: Vec<String> = board.list().into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["c", "a", "b"], "file order, the leaving worker after");
        let b = board.get("b").unwrap();
        assert_eq!((b.state, b.in_flight), (WorkerState::Draining, 1));
        assert_eq!(board.get("a").unwrap().configured_capacity, 3);
        assert_eq!(board.get("c").unwrap().state, WorkerState::Unknown);
        // b's task ends: b leaves; indexes stay right for the others
        t.release("b", Ended::Nothing, None).await;
        assert!(board.get("b").is_none());
        assert_eq!(place(&t, &[]).await.as_deref(), Some("a"));
        assert_eq!(board.get("a").unwrap().in_flight, 1);
        // a new address while busy: moves once idle
        let moved = WorkerEntry { port: 9, ..wider };
        lb.send(ApplyConfig {
            entries: vec![one("c", 3), moved],
        })
        .await
        .unwrap();
        t.settle().await;
        assert_eq!(board.get("a").unwrap().port, 1);
        assert_eq!(board.get("a").unwrap().state, WorkerState::Draining);
        t.release("a", Ended::Nothing, None).await;
        let a = board.get("a").unwrap();
        assert_eq!((a.port, a.state), (9, WorkerState::Unknown));
    });
}

#[test]
fn an_id_is_taken_back_only_by_its_process_or_with_its_secret() {
    actix_rt::System::new().block_on(async {
        let t = wired(&[one("a", 1)], &[]).await;
        let (lb, board) = (&t.lb, &t.board);
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let x = live.local_addr().unwrap().port();
        let join = |id: &str, port: u16, instance: &str, secret: &str| {
            t.lb.send(Join {
                member: JoinedMember {
                    entry: one(id, port),
                    instance: instance.into(),
                    secret_sha256: String::new(),
                },
                secret: secret.into(),
            })
        };
        let first = join("x", x, "i1", "").await.unwrap().unwrap();
        assert_eq!(first.source, MemberSource::Joined);
        assert_eq!(first.secret.len(), 64, "a secret is issued at the first join");
        assert_eq!(board.get("x").unwrap().source, MemberSource::Joined);
        // the same process again, showing its secret: nothing new issued
        let again = join("x", x, "i1", &first.secret).await.unwrap().unwrap();
        assert_eq!(again.secret, "");
        // another process, same address or not, without the secret: refused
        for port in [x, 6] {
            let clash = join("x", port, "i2", "").await.unwrap();
            assert!(
                matches!(&clash, Err(JoinRefused::Held { address, .. }) if *address == format!("127.0.0.1:{x}")),
                "{clash:?}"
            );
            let wrong = join("x", port, "i2", "0123").await.unwrap();
            assert!(matches!(wrong, Err(JoinRefused::Held { .. })), "{wrong:?}");
        }
        // the worker restarted (a new process) with the secret it kept: fine
        let back = join("x", x, "i3", &first.secret).await.unwrap().unwrap();
        assert_eq!(back.secret, "");
        // a configured id: only from its configured address
        assert_eq!(
            join("a", 1, "j", "").await.unwrap().map(|j| j.source),
            Ok(MemberSource::Config)
        );
        assert!(join("a", 7, "j", "").await.unwrap().is_err());
        // drained on request: it leaves, and its re-joins stay drained
        lb.send(DrainWorker { id: "x".into() }).await.unwrap();
        t.settle().await;
        assert!(board.get("x").is_none());
        assert!(join("x", x, "i3", "").await.unwrap().is_ok());
        assert_eq!(board.get("x").unwrap().state, WorkerState::Drained);
        assert_eq!(board.list().len(), 2);
    });
}

#[test]
fn a_join_tells_the_core_one_view_not_the_whole_list() {
    actix_rt::System::new().block_on(async {
        let entries: Vec<WorkerEntry> = (1..=50).map(|i| one(&format!("c{i}"), i)).collect();
        let t = wired(&entries, &[]).await;
        let before = t.core.send(RostersTold).await.unwrap().len();
        let joined =
            t.lb.send(Join {
                member: JoinedMember {
                    entry: one("j", 999),
                    instance: "i".into(),
                    secret_sha256: String::new(),
                },
                secret: String::new(),
            })
            .await
            .unwrap();
        assert!(joined.is_ok(), "{joined:?}");
        t.settle().await;
        let told = t.core.send(RostersTold).await.unwrap();
        assert!(told.len() > before, "the core was told of the join");
        assert!(
            told[before..].iter().all(|&(full, views)| !full && views == 1),
            "one view per change, never the whole list of 51: {told:?}"
        );
        let ids: Vec<String> = t.board.list().into_iter().map(|w| w.id).collect();
        assert_eq!((ids.len(), ids.last().map(String::as_str)), (51, Some("j")));
    });
}
