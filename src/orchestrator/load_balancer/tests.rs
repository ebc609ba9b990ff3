//! LoadBalancer unit tests: placement, strategies, membership changes.

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
    let lb = LoadBalancer::new(&[entry("b", 2), entry("a", 1)], Balancing::RoundRobin);
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
        let lb = LoadBalancer::new(&[entry("w", 1)], Balancing::RoundRobin);
        let board = lb.board();
        let lb = lb.start();
        lb.send(WorkerUpdate {
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
        let row = serde_json::to_value(board.get("w").unwrap()).unwrap();
        assert_eq!(row["state"], "down");
        assert_eq!(row["state_reason"], "no answer for 30.0 s");
        let why = lb
            .send(Explain {
                kernel: "reference".into(),
            })
            .await
            .unwrap();
        assert_eq!(why.per_worker[0].reason, "is down (no answer for 30.0 s)");
    });
}

/// Swallows the outcomes of proxies started in tests.
struct Sink;
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<AttemptOutcome> for Sink {
    type Result = ();
    fn handle(&mut self, _: AttemptOutcome, _: &mut Self::Context) {}
}
impl Handler<crate::orchestrator::task_queue::AttemptsStarted> for Sink {
    type Result = ();
    fn handle(&mut self, _: crate::orchestrator::task_queue::AttemptsStarted, _: &mut Self::Context) {}
}
impl Handler<CapacityAvailable> for Sink {
    type Result = ();
    fn handle(&mut self, _: CapacityAvailable, _: &mut Self::Context) {}
}

/// Wires `lb` to a sink that swallows what it and its proxies send.
pub(super) async fn wire_to_sink(lb: &Addr<LoadBalancer>) {
    let sink = Sink.start();
    lb.send(Wire {
        queue: sink.clone().recipient(),
        proxies: Vec::new(),
        outcomes: sink.clone().recipient(),
        started: sink.recipient(),
        settings: ProxySettings {
            heartbeat_interval: Duration::from_secs(60),
            worker_timeout: Duration::from_secs(60),
            task_timeout: None,
            token: None,
            tls: None,
            metrics: Default::default(),
            max_result_bytes: 16 << 20,
        },
        store: None,
    })
    .await
    .unwrap();
}

/// Reports worker `id` up with `capacity` slots and `kernels`, taking no
/// work ahead (placements fill slots only).
pub(super) async fn report_up(
    lb: &Addr<LoadBalancer>,
    id: &str,
    capacity: usize,
    kernels: Vec<&'static str>,
) {
    lb.send(WorkerUpdate {
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
}

/// A wired LoadBalancer whose workers `up` are reported up.
async fn wired(entries: &[WorkerEntry], up: &[&str]) -> (Addr<LoadBalancer>, WorkerBoard) {
    let lb = LoadBalancer::new(entries, Balancing::LeastLoaded);
    let board = lb.board();
    let lb = lb.start();
    wire_to_sink(&lb).await;
    for id in up {
        report_up(&lb, id, 1, vec!["reference"]).await;
    }
    (lb, board)
}

async fn place(lb: &Addr<LoadBalancer>, avoid: &[&str]) -> Option<String> {
    let avoid = avoid.iter().map(|a| WorkerId::new(a)).collect();
    let mut out = lb
        .send(Assign {
            tasks: vec![ToPlace {
                kernel: "reference".into(),
                avoid,
                priority: crate::model::Priority::Medium,
                size: (100, 10),
            }],
        })
        .await
        .unwrap();
    out.pop().unwrap().map(|p| p.worker_id.to_string())
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
        let (lb, _) = wired(&[one("a", 1), one("b", 2)], &["a", "b"]).await;
        // least_loaded would pick a (first); a failed the task: b
        assert_eq!(place(&lb, &["a"]).await.as_deref(), Some("b"));
        // b is full now: wait for it rather than go back to a
        assert_eq!(place(&lb, &["a"]).await, None);
        assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
        for w in ["a", "b"] {
            lb.send(Release {
                worker_id: WorkerId::new(w),
                ended: Ended::Nothing,
                size: None,
            })
            .await
            .unwrap();
        }
        // b drained: a is the only capable worker, so back to a
        lb.send(DrainWorker { id: "b".into() }).await.unwrap();
        assert_eq!(place(&lb, &["a"]).await.as_deref(), Some("a"));
    });
}

#[test]
fn a_drained_worker_takes_nothing_until_resumed() {
    actix_rt::System::new().block_on(async {
        let (lb, board) = wired(&[one("a", 1)], &["a"]).await;
        assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
        let state = lb.send(DrainWorker { id: "a".into() }).await.unwrap();
        assert_eq!(state, Some(WorkerState::Draining), "a task still runs");
        lb.send(Release {
            worker_id: WorkerId::new("a"),
            ended: Ended::Nothing,
            size: None,
        })
        .await
        .unwrap();
        assert_eq!(board.get("a").unwrap().state, WorkerState::Drained);
        assert_eq!(place(&lb, &[]).await, None);
        let state = lb.send(ResumeWorker { id: "a".into() }).await.unwrap();
        assert_eq!(state, Some(WorkerState::Up));
        assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
        assert_eq!(lb.send(DrainWorker { id: "zz".into() }).await.unwrap(), None);
    });
}

#[test]
fn a_config_edit_adds_changes_and_drains_out() {
    actix_rt::System::new().block_on(async {
        let (lb, board) = wired(&[one("a", 1), one("b", 2)], &["a", "b"]).await;
        assert_eq!(place(&lb, &["a"]).await.as_deref(), Some("b"));
        let wider = WorkerEntry {
            capacity: 3,
            ..one("a", 1)
        };
        lb.send(ApplyConfig {
            entries: vec![one("c", 3), wider.clone()],
        })
        .await
        .unwrap();
        let ids: Vec<String> = board.list().into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["c", "a", "b"], "file order, the leaving worker after");
        let b = board.get("b").unwrap();
        assert_eq!((b.state, b.in_flight), (WorkerState::Draining, 1));
        assert_eq!(board.get("a").unwrap().configured_capacity, 3);
        assert_eq!(board.get("c").unwrap().state, WorkerState::Unknown);
        // b's task ends: b leaves; indexes stay right for the others
        lb.send(Release {
            worker_id: WorkerId::new("b"),
            ended: Ended::Nothing,
            size: None,
        })
        .await
        .unwrap();
        assert!(board.get("b").is_none());
        assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
        assert_eq!(board.get("a").unwrap().in_flight, 1);
        // a new address while busy: moves once idle
        let moved = WorkerEntry { port: 9, ..wider };
        lb.send(ApplyConfig {
            entries: vec![one("c", 3), moved],
        })
        .await
        .unwrap();
        assert_eq!(board.get("a").unwrap().port, 1);
        assert_eq!(board.get("a").unwrap().state, WorkerState::Draining);
        lb.send(Release {
            worker_id: WorkerId::new("a"),
            ended: Ended::Nothing,
            size: None,
        })
        .await
        .unwrap();
        let a = board.get("a").unwrap();
        assert_eq!((a.port, a.state), (9, WorkerState::Unknown));
    });
}

#[test]
fn a_join_is_refused_only_when_the_id_is_another_live_workers() {
    actix_rt::System::new().block_on(async {
        let (lb, board) = wired(&[one("a", 1)], &[]).await;
        // x's address takes connections (and never answers): a holder
        // whose address refuses them is gone, not a clash
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let x = live.local_addr().unwrap().port();
        let join = |id: &str, port: u16, instance: &str| {
            lb.send(Join {
                member: JoinedMember {
                    entry: one(id, port),
                    instance: instance.into(),
                },
            })
        };
        assert_eq!(join("x", x, "i1").await.unwrap(), Ok(MemberSource::Joined));
        assert_eq!(board.get("x").unwrap().source, MemberSource::Joined);
        assert_eq!(join("x", x, "i1").await.unwrap(), Ok(MemberSource::Joined));
        let clash = join("x", 6, "i2").await.unwrap();
        assert!(
            matches!(&clash, Err(JoinRefused::Taken { address, .. }) if *address == format!("127.0.0.1:{x}")),
            "{clash:?}"
        );
        // the same address after a restart of the worker: fine
        assert_eq!(join("x", x, "i3").await.unwrap(), Ok(MemberSource::Joined));
        // a configured id: only from its configured address
        assert_eq!(join("a", 1, "j").await.unwrap(), Ok(MemberSource::Config));
        assert!(join("a", 7, "j").await.unwrap().is_err());
        // drained on request: it leaves, and its re-joins stay drained
        lb.send(DrainWorker { id: "x".into() }).await.unwrap();
        assert!(board.get("x").is_none());
        assert_eq!(join("x", x, "i3").await.unwrap(), Ok(MemberSource::Joined));
        assert_eq!(board.get("x").unwrap().state, WorkerState::Drained);
        assert_eq!(board.list().len(), 2);
    });
}
