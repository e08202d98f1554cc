//! An HTTP flood on `addr` must not stall captures (issue 17): while clients hammer
//! `/metrics`, `/status` and `/healthz` and hold idle connections open, each commit still
//! reaches a file replica about as fast as without them; connections past the bound are
//! refused at once, and idle ones are closed once their time to send headers is up.

use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::metrics::{free_port, http_get};

/// Databases beside the written one, never written during the run: a report covers
/// every database, so they make each report as costly as a modest deployment's.
const QUIET_DBS: usize = 100;
/// How long the writer commits in each run.
const RUN_FOR: Duration = Duration::from_secs(5);
/// Client threads of the flood.
const CLIENTS: usize = 8;
/// Requests each client keeps in flight at once, one per connection.
const IN_FLIGHT_PER_CLIENT: usize = 50;
/// Rounds of requests each client sends at most (so the flood is bounded whatever the
/// speed).
const ROUNDS: usize = 200;
/// Connections held open without a request during the flood (under the server's bound).
const IDLE: usize = 32;
/// The server's connection bound (`observe::server`).
const MAX_CONNECTIONS: usize = 64;

/// Capture latencies of one run: for each commit, the time until the replica held it.
struct Latencies {
    p50: Duration,
    max: Duration,
    commits: usize,
    /// Requests answered during the run (0 without a flood).
    answered: usize,
}

/// Highest TXID of the replica's L0 (where every upload lands first).
fn l0_max(replica: &Path) -> u64 {
    replica_l0_txids(replica).last().copied().unwrap_or(0)
}

/// Runs a replicator with `addr` beside a writer that commits one transaction at a time
/// and waits until the replica holds it; with `flood`, clients hammer the server
/// meanwhile. Then checks the connection bound (with `flood`) and stops cleanly.
fn run(flood: bool) -> Latencies {
    let w = Work::new();
    let db = w.path("app.db");
    let replica = w.path("replica");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    let port = free_port();
    let entry = |db: &Path, replica: &Path| {
        format!(
            "  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            db.display(),
            replica.display()
        )
    };
    let mut yaml = format!("addr: 127.0.0.1:{port}\ndbs:\n{}", entry(&db, &replica));
    let mut quiet_replicas = Vec::new();
    for i in 0..QUIET_DBS {
        let (qdb, qrep) = (
            w.path(&format!("quiet{i}.db")),
            w.path(&format!("replica{i}")),
        );
        insert_rows(&app_db(&qdb), 1, 100);
        yaml += &entry(&qdb, &qrep);
        quiet_replicas.push(qrep);
    }
    let cfg = w.config(&yaml);
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(60), "addr to answer", || {
        http_get(port, "/healthz").is_some()
    });
    eventually(
        Duration::from_secs(120),
        "every quiet database's first upload",
        || quiet_replicas.iter().all(|q| l0_max(q) >= 1),
    );
    // Settled: the first upload is there and nothing more arrives.
    let mut last = 0;
    eventually(
        Duration::from_secs(60),
        "the first upload to settle",
        || {
            let m = l0_max(&replica);
            let settled = m >= 1 && m == last;
            last = m;
            // Spaces the polls: two equal readings 200 ms apart count as settled.
            std::thread::sleep(Duration::from_millis(200));
            settled
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut idle = Vec::new();
    let mut clients = Vec::new();
    if flood {
        for _ in 0..IDLE {
            idle.push(TcpStream::connect(("127.0.0.1", port)).unwrap());
        }
        for i in 0..CLIENTS {
            let stop = stop.clone();
            clients.push(std::thread::spawn(move || flood_client(port, i, &stop)));
        }
    }

    let mut lat = Vec::new();
    let began = Instant::now();
    while began.elapsed() < RUN_FOR {
        let before = l0_max(&replica);
        insert_rows(&app, 1, 100);
        let t = Instant::now();
        while l0_max(&replica) <= before {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "a commit not replicated within 60 s"
            );
            // Spaces the polls of this wait loop (1 ms: it measures latency).
            std::thread::sleep(Duration::from_millis(1));
        }
        lat.push(t.elapsed());
        // Paces the writer.
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    drop(idle);
    let mut sorted = lat.clone();
    sorted.sort();
    eprintln!(
        "flood {flood}: capture latency p50 {:?} max {:?} over {} commits; {answered} requests answered",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        sorted.len()
    );

    if flood {
        check_connection_bound(port);
    }
    assert_eq!(http_get(port, "/healthz"), Some((200, "ok\n".into())));
    drop(app);
    assert_eq!(r.stop(), 0);
    lat.sort();
    Latencies {
        p50: lat[lat.len() / 2],
        max: *lat.last().unwrap(),
        commits: lat.len(),
        answered,
    }
}

/// One flood client: rounds of [`IN_FLIGHT_PER_CLIENT`] requests sent on as many new
/// connections before any answer is read, until `stop`. Returns the requests answered
/// (refusals included).
fn flood_client(port: u16, i: usize, stop: &AtomicBool) -> usize {
    use std::io::{Read, Write};
    let paths = ["/metrics", "/status", "/healthz"];
    let mut answered = 0;
    for round in 0..ROUNDS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut conns: Vec<TcpStream> = (0..IN_FLIGHT_PER_CLIENT)
            .filter_map(|n| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                let path = paths[(i + round + n) % paths.len()];
                write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
                Some(s)
            })
            .collect();
        for s in &mut conns {
            let mut buf = Vec::new();
            if s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                answered += 1;
            }
        }
    }
    answered
}

/// With the bound's worth of connections held open, one more is refused at once (503
/// or closed), not served; the idle ones are closed by the server once their time to
/// send request headers (5 s) is up, and requests are served again.
fn check_connection_bound(port: u16) {
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let opened = Instant::now();
    // An extra request is served only while the server has not yet accepted all the held
    // connections; once it has, the next one must be refused, and quickly. (No bound at
    // all serves every one, and this times out.)
    let mut took = Duration::ZERO;
    eventually(
        Duration::from_secs(3),
        "a request past the held connections to be refused",
        || {
            let t = Instant::now();
            let extra = http_get(port, "/healthz");
            took = t.elapsed();
            !matches!(extra, Some((200, _)))
        },
    );
    assert!(took < Duration::from_secs(2), "refusal took {took:?}");
    eventually(
        Duration::from_secs(30),
        "the server to serve again, the idle connections timed out",
        || http_get(port, "/healthz").is_some_and(|(c, _)| c == 200),
    );
    let waited = opened.elapsed();
    assert!(
        waited < Duration::from_secs(9),
        "idle connections held their slots for {waited:?}"
    );
    for h in &mut held {
        use std::io::Read;
        h.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        // Closed by the server: end of stream, or a reset.
        assert!(
            !matches!(h.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
            "an idle connection is still open"
        );
    }
}

#[test]
fn http_flood_does_not_stall_captures() {
    let quiet = run(false);
    let flooded = run(true);
    eprintln!(
        "capture latency without flood: p50 {:?} max {:?} ({} commits); with flood: p50 {:?} max {:?} ({} commits, {} requests answered)",
        quiet.p50, quiet.max, quiet.commits, flooded.p50, flooded.max, flooded.commits, flooded.answered
    );
    assert!(flooded.answered > 0, "the flood never got an answer");
    assert!(
        flooded.max < Duration::from_secs(1),
        "a commit took {:?} to reach the replica under the flood",
        flooded.max
    );
    assert!(
        flooded.p50 <= quiet.p50 * 3 + Duration::from_millis(50),
        "median capture latency {:?} under the flood, {:?} without",
        flooded.p50,
        quiet.p50
    );
}
