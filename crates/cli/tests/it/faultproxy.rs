//! A userspace TCP fault proxy between the replicator and a real server (Garage): added
//! latency, throttled bandwidth, and connections reset (RST) or cut (FIN) mid-request or
//! mid-response at seeded random byte offsets. It stands in for `tc netem`, which this
//! kernel may lack, and adds what netem cannot do: a cut at a chosen point of an HTTP body.
//!
//! It can also hold the next PUT request part way through its body (`stall_puts`), so a
//! test can `kill -9` the replicator while an upload is provably in flight.
//!
//! Faults are drawn per connection from one seeded generator, so a seed replays the same
//! fault plan (the timing of the replicator's requests still varies run to run).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::crash::Rng;

/// What the proxy does to traffic; changeable while it runs.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Delay before forwarding each chunk, uniform in this range (ms).
    pub latency_ms: (u64, u64),
    /// Bandwidth per direction and connection, bytes per second (0: unlimited).
    pub bytes_per_sec: u64,
    /// Per connection, percent chance of a reset (RST) part way through the responses.
    pub reset_response_pct: u64,
    /// Per connection, percent chance of a cut (FIN, a truncated body) part way through.
    pub cut_response_pct: u64,
    /// Per connection, percent chance of a reset part way through the requests (uploads).
    pub reset_request_pct: u64,
    /// A response fault's offset is uniform in `0..this` bytes of a connection's responses.
    pub response_fault_within_bytes: u64,
    /// A request fault's offset is uniform in `0..this` bytes of a connection's requests.
    pub request_fault_within_bytes: u64,
}

impl Faults {
    /// Forward everything untouched.
    pub fn none() -> Faults {
        Faults {
            latency_ms: (0, 0),
            bytes_per_sec: 0,
            reset_response_pct: 0,
            cut_response_pct: 0,
            reset_request_pct: 0,
            response_fault_within_bytes: 1,
            request_fault_within_bytes: 1,
        }
    }
}

/// Counters of what the proxy did.
#[derive(Default, Debug)]
pub struct Stats {
    pub connections: AtomicU64,
    pub resets: AtomicU64,
    pub cuts: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub puts: AtomicU64,
    /// PUTs currently held by `stall_puts`.
    pub stalled: AtomicU64,
}

impl Stats {
    pub fn summary(&self) -> String {
        format!(
            "{} connections, {} resets, {} cuts, {} PUTs, {} KiB up, {} KiB down",
            self.connections.load(Ordering::Relaxed),
            self.resets.load(Ordering::Relaxed),
            self.cuts.load(Ordering::Relaxed),
            self.puts.load(Ordering::Relaxed),
            self.bytes_up.load(Ordering::Relaxed) / 1024,
            self.bytes_down.load(Ordering::Relaxed) / 1024,
        )
    }
}

struct Shared {
    upstream: u16,
    faults: Mutex<Faults>,
    rng: Mutex<Rng>,
    stats: Stats,
    stall_puts: AtomicBool,
    blackout: AtomicBool,
    stop: AtomicBool,
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// What happens to one connection.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Clean,
    /// After this many response bytes: RST.
    ResetResponse(u64),
    /// After this many response bytes: FIN both ways.
    CutResponse(u64),
    /// After this many request bytes: RST.
    ResetRequest(u64),
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub fn start(upstream: u16, seed: u64, faults: Faults) -> FaultProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            upstream,
            faults: Mutex::new(faults),
            rng: Mutex::new(Rng::new(seed)),
            stats: Stats::default(),
            stall_puts: AtomicBool::new(false),
            blackout: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let s = s.clone();
                        std::thread::spawn(move || serve(s, client));
                    }
                    // Spaces the polls of the non-blocking accept (it checks `stop`).
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    // Spaces the retries after an accept error.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// While on, every request byte on any connection, new or already open, resets that
    /// connection: a blackout that pooled connections cannot slip through.
    pub fn set_blackout(&self, on: bool) {
        self.shared.blackout.store(on, Ordering::SeqCst);
    }

    pub fn set_faults(&self, f: Faults) {
        *self.shared.faults.lock().unwrap() = f;
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// While on, the first chunk of each new PUT is forwarded only in part and the
    /// connection then holds (no more bytes either way) until it is turned off.
    pub fn stall_puts(&self, on: bool) {
        self.shared.stall_puts.store(on, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.stall_puts.store(false, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Makes the next close of `s` send RST instead of FIN (SO_LINGER with a zero timeout).
fn linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn serve(s: Arc<Shared>, client: TcpStream) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", s.upstream)) else {
        // The server is down (an outage test): refuse as it would.
        linger_zero(&client);
        return;
    };
    s.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (faults, plan, rng_seed) = {
        let f = s.faults.lock().unwrap().clone();
        let mut rng = s.rng.lock().unwrap();
        let roll = rng.range(0, 100);
        let down = rng.range(0, f.response_fault_within_bytes.max(1));
        let up = rng.range(0, f.request_fault_within_bytes.max(1));
        let plan = if roll < f.reset_response_pct {
            Plan::ResetResponse(down)
        } else if roll < f.reset_response_pct + f.cut_response_pct {
            Plan::CutResponse(down)
        } else if roll < f.reset_response_pct + f.cut_response_pct + f.reset_request_pct {
            Plan::ResetRequest(up)
        } else {
            Plan::Clean
        };
        (f, plan, rng.next())
    };
    let conn = Arc::new(Conn {
        client,
        upstream,
        aborted: AtomicBool::new(false),
    });
    let up = {
        let (s, c, f) = (s.clone(), conn.clone(), faults.clone());
        std::thread::spawn(move || pump(&s, &c, true, plan, &f, Rng::new(rng_seed)))
    };
    pump(&s, &conn, false, plan, &faults, Rng::new(rng_seed ^ 0x5555));
    let _ = up.join();
}

/// One proxied connection; its sockets close when both directions are done.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    /// A fault fired: the client gets an RST or a FIN from it, nothing more.
    aborted: AtomicBool,
}

/// Copies one direction (`up`: client to server) until either side closes, applying `f`
/// and the connection's `plan`.
fn pump(s: &Shared, conn: &Conn, up: bool, plan: Plan, f: &Faults, mut rng: Rng) {
    let (mut from, mut to) = if up {
        (&conn.client, &conn.upstream)
    } else {
        (&conn.upstream, &conn.client)
    };
    let mut buf = vec![0u8; 16 << 10];
    let mut total = 0u64;
    let fault_at = match (plan, up) {
        (Plan::ResetRequest(n), true) => Some((n, true)),
        (Plan::ResetResponse(n), false) => Some((n, true)),
        (Plan::CutResponse(n), false) => Some((n, false)),
        _ => None,
    };
    let close_both = |reset: bool| {
        conn.aborted.store(true, Ordering::SeqCst);
        let _ = conn.upstream.shutdown(Shutdown::Both);
        if reset {
            // SHUT_RD sends nothing but wakes the other direction's reader; the close
            // after both pumps end then sends the RST.
            linger_zero(&conn.client);
            let _ = conn.client.shutdown(Shutdown::Read);
        } else {
            let _ = conn.client.shutdown(Shutdown::Both);
        }
    };
    loop {
        // Throttled links deliver in small pieces.
        let max = if f.bytes_per_sec > 0 {
            4 << 10
        } else {
            buf.len()
        };
        let n = match from.read(&mut buf[..max]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if up && s.blackout.load(Ordering::SeqCst) {
            s.stats.resets.fetch_add(1, Ordering::Relaxed);
            close_both(true);
            return;
        }
        let mut chunk = &buf[..n];
        if up && chunk.starts_with(b"PUT ") {
            s.stats.puts.fetch_add(1, Ordering::Relaxed);
            if s.stall_puts.load(Ordering::SeqCst) {
                // Forward part of the request, then hold until released or closed.
                let part = (chunk.len() / 2).max(1);
                let _ = to.write_all(&chunk[..part]);
                s.stats.stalled.fetch_add(1, Ordering::SeqCst);
                while s.stall_puts.load(Ordering::SeqCst) && !s.stop.load(Ordering::Relaxed) {
                    // Spaces the polls of this wait loop.
                    std::thread::sleep(Duration::from_millis(5));
                }
                s.stats.stalled.fetch_sub(1, Ordering::SeqCst);
                chunk = &chunk[part..];
            }
        }
        let (lo, hi) = f.latency_ms;
        if hi > 0 {
            // The fault itself: injected latency.
            std::thread::sleep(Duration::from_millis(rng.range(lo, hi + 1)));
        }
        if let Some(us) = (chunk.len() as u64 * 1_000_000).checked_div(f.bytes_per_sec) {
            // The fault itself: the bandwidth limit.
            std::thread::sleep(Duration::from_micros(us));
        }
        if let Some((at, reset)) = fault_at {
            if total + chunk.len() as u64 > at {
                let keep = (at - total.min(at)) as usize;
                let _ = to.write_all(&chunk[..keep]);
                if reset {
                    s.stats.resets.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.stats.cuts.fetch_add(1, Ordering::Relaxed);
                }
                close_both(reset);
                return;
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        total += chunk.len() as u64;
        let counter = if up {
            &s.stats.bytes_up
        } else {
            &s.stats.bytes_down
        };
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    if !conn.aborted.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    }
}
