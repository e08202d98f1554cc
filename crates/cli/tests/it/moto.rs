//! A real moto S3 server (the standalone server of the `moto` AWS mock) on loopback, one
//! per test, in memory, killed on drop.
//!
//! Why moto beside Garage: Garage ignores `If-None-Match` and `If-Match` on PUT, so leases
//! cannot be tested on it; moto honours both, as AWS S3, MinIO and R2 do (and `If-Match` on
//! DELETE since 5.1.22). moto does not check request signatures, so everything else S3
//! stays tested on Garage.
//!
//! Atomicity: moto's PUT checks the condition, then stores, with no lock between, in a
//! threaded server. Mostly the race never shows, but on a loaded machine two of eight
//! racing conditional writes both succeeded (in 3 of 4 runs of 100 rounds, four runs at
//! once), which AWS S3 never allows. So the harness runs moto's own WSGI app as
//! `moto_server` does, with one lock around each request ([`SERIAL_MOTO_PY`]): requests
//! are handled one at a time, as atomic as the real thing, still over keep-alive
//! connections.
//!
//! moto comes from the venv scripts/test.sh creates in `~/.cache/sqlite-replicate/moto`
//! (`pip install "moto[server]>=5.1.22"`), or `$MOTO_PYTHON` (a Python that imports moto).
//! Tests fail, never skip, without it. The bucket is created with one plain (unsigned)
//! HTTP request.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Proc;
use crate::metrics::free_port;

/// moto's server (`moto.server.main`, less its options) with each request under one lock.
/// Arguments: host, port.
pub const SERIAL_MOTO_PY: &str = r#"
import os, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serial(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple(host, port, serial, threaded=True, request_handler=MotoRequestHandler)
"#;

pub struct Moto {
    proc: Proc,
    dir: tempfile::TempDir,
    pub port: u16,
    /// A bucket created at start.
    pub bucket: String,
}

impl Moto {
    /// Starts a server with one bucket, `sr-test`.
    pub fn start() -> Moto {
        let python = moto_python();
        let dir = tempfile::Builder::new()
            .prefix("sr-moto-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cmd = Command::new(&python);
        cmd.args(["-c", SERIAL_MOTO_PY, "127.0.0.1", &port.to_string()]);
        let proc = Proc::spawn("moto server", cmd, dir.path().join("moto.log"));
        let mut m = Moto {
            proc,
            dir,
            port,
            bucket: "sr-test".into(),
        };
        m.wait_ready();
        m.create_bucket("sr-test");
        m
    }

    /// Waits until the server answers HTTP.
    fn wait_ready(&mut self) {
        let t = Instant::now();
        loop {
            if let Ok(200) = self.request("GET", "/moto-api/") {
                return;
            }
            if let Some(st) = self.proc.exited() {
                panic!("the moto server exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the moto server did not answer:\n{}",
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates a bucket (`PUT /<bucket>`, unsigned: moto does not check signatures).
    pub fn create_bucket(&self, name: &str) {
        let status = self.request("PUT", &format!("/{name}")).unwrap();
        assert_eq!(status, 200, "creating bucket {name}:\n{}", self.log());
    }

    /// One bodiless HTTP/1.1 request on a fresh connection: the status code.
    fn request(&self, method: &str, path: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            self.port
        )?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        let text = String::from_utf8_lossy(&reply);
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad reply: {text:?}")))
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The replica lines of a config (`replica:` body at 6 spaces), for `path` in the
    /// bucket. The keys are moto's conventional test keys (any would do).
    pub fn replica_yaml(&self, path: &str) -> String {
        format!(
            "      type: s3\n      bucket: {}\n      path: {path}\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: testing\n      secret-access-key: testing\n",
            self.bucket,
            self.endpoint(),
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}

/// `$MOTO_PYTHON`, else the Python of the venv scripts/test.sh creates.
pub fn moto_python() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let venv = PathBuf::from(home).join(".cache/sqlite-replicate/moto");
    let server = venv.join("bin/moto_server");
    assert!(
        server.is_file(),
        "moto is required for the S3 lease tests: {} is missing (scripts/test.sh installs it: python3 -m venv ~/.cache/sqlite-replicate/moto && ~/.cache/sqlite-replicate/moto/bin/pip install \"moto[server]>=5.1.22\"), or set MOTO_PYTHON",
        server.display()
    );
    venv.join("bin/python")
}
