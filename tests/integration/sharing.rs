//! What one client or one orchestrator may take of what others share: a
//! client holds at most a few `/events` streams, so another still gets
//! one, and a stream it does not read is closed; a worker serves the orchestrator of one data folder at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{http_with, sleep_task, wait_until, worker_row, Proc, FAST};

const LONG: Duration = Duration::from_secs(60);

/// A TCP connection to `addr` from the loopback address `from` (another
/// client as the server sees it).
pub(crate) fn connect_from(from: std::net::Ipv4Addr, addr: &str) -> TcpStream {
    connect_with(from, addr, None)
}

/// [`connect_from`], with a receive buffer of `receive_buffer` bytes when
/// given (a client that reads nothing then fills up in seconds).
pub(crate) fn connect_with(
    from: std::net::Ipv4Addr,
    addr: &str,
    receive_buffer: Option<libc::c_int>,
) -> TcpStream {
    use std::os::fd::FromRawFd;
    let to: std::net::SocketAddrV4 = addr.parse().unwrap();
    // SAFETY: plain socket calls on a descriptor this function owns, with
    // sockaddr_in values of the right size; the descriptor is handed to
    // the TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let sockaddr = |ip: std::net::Ipv4Addr, port: u16| {
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_addr.s_addr = u32::from(ip).to_be();
            a.sin_port = port.to_be();
            a
        };
        if let Some(size) = receive_buffer {
            let set = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        }
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sockaddr(from, 0);
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), len),
            0,
            "bind: {}",
            std::io::Error::last_os_error()
        );
        let remote = sockaddr(*to.ip(), to.port());
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), len),
            0,
            "connect: {}",
            std::io::Error::last_os_error()
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// Opens `GET /events` on `stream` and reads only the status line.
pub(crate) fn open_events(mut stream: TcpStream, host: &str) -> (u16, TcpStream) {
    write!(
        stream,
        "GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    (status, stream)
}

#[test]
fn one_client_holding_dashboard_streams_leaves_room_for_another() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    let port = o.addr.rsplit(':').next().unwrap();
    let host = format!("localhost:{port}");
    // one client opens 40 streams and reads none of them
    let rogue = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (status, s) = open_events(connect_from(rogue, &o.addr), &host);
        statuses.push(status);
        held.push(s);
    }
    let granted = statuses.iter().filter(|s| **s == 200).count();
    eprintln!(
        "one client asked for 40 /events streams: {granted} granted, the rest {:?}",
        statuses.last()
    );
    assert_eq!(granted, 4, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // from 127.0.0.1: another client, which gets its stream and its first event
    let (status, mut mine) = open_events(connect_from(std::net::Ipv4Addr::LOCALHOST, &o.addr), &host);
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: snapshot") {
        let n = mine.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended");
        seen.extend_from_slice(&buf[..n]);
    }
    // the refusal says why
    let (_, mut fifth) = open_events(connect_from(rogue, &o.addr), &host);
    let mut rest = String::new();
    fifth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = fifth.read_to_string(&mut rest);
    assert!(rest.contains("too_many_streams"), "{rest}");
    drop(held);
}

#[test]
fn a_stream_its_client_does_not_read_is_closed_and_its_place_freed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    let port = o.addr.rsplit(':').next().unwrap();
    let host = format!("localhost:{port}");
    // one client takes its four streams and reads nothing more of them
    let rogue = std::net::Ipv4Addr::new(127, 0, 0, 3);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let (status, s) = open_events(connect_with(rogue, &o.addr, Some(1024)), &host);
            assert_eq!(status, 200);
            s
        })
        .collect();
    let (status, _) = open_events(connect_from(rogue, &o.addr), &host);
    assert_eq!(status, 429, "the four are held");
    // the server ends them: the client gets a stream again
    wait_until(
        Duration::from_secs(120),
        "an unread stream closed and its place given",
        || {
            let (status, mut s) = open_events(connect_from(rogue, &o.addr), &host);
            if status == 429 {
                let _ = s.read_to_end(&mut Vec::new());
            }
            status == 200
        },
    );
    // the four end one by one; reading one before the server has ended
    // it would make it a read stream again, so wait until the log says
    // all four were ended
    wait_until(LONG, "the log says why, four times", || {
        o.log()
            .matches("a dashboard stream its client did not read for 10 s was ended")
            .count()
            >= 4
    });
    // every held stream was closed by the server (what it had sent is
    // cut short, not delivered slowly)
    for mut s in held {
        s.set_read_timeout(Some(LONG)).unwrap();
        let mut buf = [0u8; 8192];
        let reading = Instant::now();
        let end = loop {
            assert!(
                reading.elapsed() < LONG,
                "an unread stream still sends after it was ended"
            );
            match s.read(&mut buf) {
                Ok(0) => break "closed",
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
                Err(e) => panic!("the unread stream is still open: {e}"),
            }
        };
        eprintln!("an unread stream: {end}");
    }
}

fn standalone(dir: &Path, id: &str) -> Proc {
    Proc::start(
        dir,
        &["worker", "--worker-id", id, "--port", "0", "--capacity", "1"],
        &[("ORQUESTA_TEST_KERNELS", "1")],
    )
}

fn orchestrator_of(dir: &Path, worker: &Proc) -> Proc {
    let port: u16 = worker.addr.rsplit(':').next().unwrap().parse().unwrap();
    let workers = json!({"workers": [{"id": "w", "host": "127.0.0.1", "port": port, "capacity": 1,
        "algorithms": ["python"]}]});
    std::fs::write(dir.join("config_workers.json"), workers.to_string()).unwrap();
    Proc::start(dir, &["orchestrator", "--port", "0"], FAST)
}

fn status(o: &Proc, id: &str) -> String {
    o.get(&format!("/tasks/{id}")).json()["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_worker_serves_one_orchestrators_data_folder_at_a_time() {
    let wdir = tempfile::tempdir().unwrap();
    let w = standalone(wdir.path(), "w");
    let (adir, bdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = orchestrator_of(adir.path(), &w);
    assert_eq!(a.post("/tasks", &sleep_task("a1", 8.0)).status, 201);
    wait_until(LONG, "a1 running", || status(&a, "a1") == "running");

    // a second orchestrator, its own folder, the same worker
    let b = orchestrator_of(bdir.path(), &w);
    assert_eq!(b.post("/tasks", &sleep_task("b1", 0.1)).status, 201);
    wait_until(LONG, "w refused to b, with the reason", || {
        worker_row(&b, "w")["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("another data folder"))
    });
    let b_id = std::fs::read_to_string(bdir.path().join("data/orquesta.db.id")).unwrap();
    let a_id = std::fs::read_to_string(adir.path().join("data/orquesta.db.id")).unwrap();
    assert_ne!(a_id.trim(), b_id.trim());
    let direct = http_with(
        "POST",
        &w.addr,
        "/execute",
        Some(sleep_task("direct", 0.1).as_bytes()),
        &[("x-orquesta-orchestrator", b_id.trim())],
    );
    assert_eq!(direct.status, 409, "{}", direct.text());
    assert_eq!(direct.json()["code"], "other_orchestrator");
    assert_eq!(direct.json()["serving"], a_id.trim());
    // nor may b stop a's task or free its results
    let b_header = [("x-orquesta-orchestrator", b_id.trim())];
    let cancel = http_with("POST", &w.addr, "/cancel/a1", None, &b_header);
    assert_eq!(cancel.status, 409, "{}", cancel.text());
    let ack = http_with(
        "POST",
        &w.addr,
        "/results/ack",
        Some(br#"{"task_ids": ["a1"]}"#),
        &b_header,
    );
    assert_eq!(ack.status, 409, "{}", ack.text());

    // a killed while a1 runs on w, and started again on its folder: the
    // same id to w, so it is served and adopts a1 (one attempt, not re-run)
    let mut a = a;
    a.signal(libc::SIGKILL);
    a.wait_exit(LONG);
    let a = Proc::start(adir.path(), &["orchestrator", "--port", "0"], FAST);
    let again = std::fs::read_to_string(adir.path().join("data/orquesta.db.id")).unwrap();
    assert_eq!(again, a_id);
    // (with a new id it would be refused until a1 ended)
    wait_until(LONG, "w up for the restarted a while a1 still runs there", || {
        worker_row(&a, "w")["state"] == "up" && w.get("/current").text().contains("\"a1\"")
    });
    wait_until(LONG, "a1 completed", || status(&a, "a1") == "completed");
    let a1 = a.get("/tasks/a1").json();
    assert_eq!(a1["attempt_count"], 1, "adopted, not run again: {a1}");
    assert_eq!(a1["worker_id"], "w", "{a1}");

    // then w serves b
    wait_until(LONG, "b1 completed", || status(&b, "b1") == "completed");
    let b1 = b.get("/tasks/b1").json();
    assert_eq!(b1["worker_id"], "w", "{b1}");
    assert_eq!(b1["attempt_count"], 1, "{b1}");
    wait_until(LONG, "w says it serves b now", || {
        w.log()
            .contains("now serving the orchestrator of another data folder")
    });
}
