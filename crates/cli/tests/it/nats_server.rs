//! A real NATS server with JetStream (`nats-server -js`) on loopback, one per test, with a
//! user and password, killed on drop; it can be killed and started again on the same port
//! with the same JetStream store directory (what was stored survives).
//!
//! `nats-server` comes from `$NATS_SERVER_BIN`, `PATH` or `/usr/sbin/nats-server`
//! (scripts/test.sh installs Debian's package: `apt-get install -y nats-server`). Tests
//! fail, never skip, without it. Object store buckets are created with the NATS client
//! the backend uses (Litestream does not create them either: `nats object add BUCKET`).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use engine::storage::nats::NatsOptions;

use crate::harness::Proc;
use crate::s3::block_on;

pub const USER: &str = "replicator";
pub const PASSWORD: &str = "s3cret-nats-pw";

pub struct NatsServer {
    proc: Proc,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The HTTP monitoring port (`/connz`: messages per client connection).
    pub monitor_port: u16,
}

impl NatsServer {
    /// Starts a server with JetStream, its store in a temp dir.
    pub fn start() -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("sr-nats-")
            .tempdir()
            .unwrap();
        let (port, monitor_port) = (free_port(), free_port());
        let proc = spawn(dir.path(), port, monitor_port);
        let s = NatsServer {
            proc,
            dir,
            port,
            monitor_port,
        };
        s.wait_ready();
        s
    }

    /// `nats://127.0.0.1:PORT` (no credentials).
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `nats://USER:PASSWORD@127.0.0.1:PORT/BUCKET[/path]`.
    pub fn replica_url(&self, bucket_and_path: &str) -> String {
        format!(
            "nats://{USER}:{PASSWORD}@127.0.0.1:{}/{bucket_and_path}",
            self.port
        )
    }

    /// Library options for `bucket` (with `prefix`), logging in with the password.
    pub fn options(&self, bucket: &str, prefix: &str) -> NatsOptions {
        let mut o = NatsOptions::new(&self.url(), bucket);
        o.prefix = prefix.to_string();
        o.username = Some(USER.into());
        o.password = Some(PASSWORD.into());
        o.timeout = Duration::from_secs(5);
        o.reconnect_wait = Duration::from_millis(200);
        o
    }

    /// The replica lines of a config (`replica:` body at 6 spaces) for `bucket`; the keys
    /// are Litestream's, so the same YAML serves both programs.
    pub fn replica_yaml(&self, bucket: &str) -> String {
        format!(
            "      type: nats\n      url: {}/{bucket}\n      username: {USER}\n      password: {PASSWORD}\n",
            self.url()
        )
    }

    /// Creates the object store bucket `name` (file storage).
    pub fn create_bucket(&self, name: &str) {
        let url = self.url();
        block_on(async {
            let client =
                async_nats::ConnectOptions::with_user_and_password(USER.into(), PASSWORD.into())
                    .connect(url)
                    .await
                    .unwrap();
            let js = async_nats::jetstream::new(client);
            js.create_object_store(async_nats::jetstream::object_store::Config {
                bucket: name.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("creating object store bucket {name}: {e}"));
        });
    }

    /// Kills the server (SIGKILL: no clean shutdown); the store directory stays.
    pub fn kill(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Starts the server again on the same port with the same store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.proc = spawn(self.dir.path(), self.port, self.monitor_port);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nats-server did not listen:\n{}",
                self.proc.log_text()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(25));
        }
        // JetStream is up once it says so (after recovering its streams on a restart).
        let t = Instant::now();
        while !self.proc.log_text().contains("Server is ready") {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nats-server not ready:\n{}",
                self.proc.log_text()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Messages the server has received from (`in`) and sent to (`out`) the client
    /// connections open now, summed, from the monitoring endpoint `/connz`.
    pub fn client_msgs(&self) -> (u64, u64) {
        use std::io::{Read, Write};
        let mut c = TcpStream::connect(("127.0.0.1", self.monitor_port)).unwrap();
        c.write_all(b"GET /connz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let conns = v["connections"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| conns.iter().map(|c| c[k].as_u64().unwrap_or(0)).sum();
        (sum("in_msgs"), sum("out_msgs"))
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &std::path::Path, port: u16, monitor_port: u16) -> Proc {
    let mut cmd = Command::new(nats_server_bin());
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .args(["--user", USER, "--pass", PASSWORD])
        .args(["-m", &monitor_port.to_string()]);
    // A fresh log per start: "Server is ready" must be this run's.
    Proc::spawn(
        "nats-server",
        cmd,
        dir.join(format!("nats-{}.log", rand_suffix())),
    )
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    for cand in ["nats-server", "/usr/sbin/nats-server"] {
        if Command::new(cand).arg("--version").output().is_ok() {
            return PathBuf::from(cand);
        }
    }
    panic!(
        "nats-server not found: the NATS tests need it (scripts/test.sh installs it: \
         apt-get install -y nats-server), or set NATS_SERVER_BIN"
    );
}
