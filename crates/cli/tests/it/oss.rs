//! `type: oss` (Alibaba OSS, Litestream's type) served by the S3 client through OSS's
//! S3-compatible API, on a real Garage with OSS-style addressing: virtual-hosted requests
//! (`BUCKET.ENDPOINT-HOST`, which OSS requires), Litestream's oss keys, replicate →
//! restore page for page.
//!
//! Garage answers virtual-hosted requests under its `root_domain` (`.s3.garage.localhost`,
//! see `garage`), a name no resolver here knows. The replicator reaches it the way it
//! reaches any host behind an HTTP proxy: `HTTP_PROXY` names a proxy of this test, which
//! records every request line and Host header and passes the bytes on to Garage.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use crate::garage::{Garage, REGION};
use crate::harness::*;

/// A plain TCP relay to `upstream` that keeps a copy of what clients send.
struct RecordingProxy {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    fn start(upstream: u16) -> RecordingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let rec = sent.clone();
        // Runs until the test process ends (a listener thread per test).
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(client) = c else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let rec = rec.clone();
                std::thread::spawn(move || relay(client, server, Some(rec)));
                std::thread::spawn(move || relay(s2, c2, None));
            }
        });
        RecordingProxy { port, sent }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Request lines and Host headers seen so far.
    fn heads(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        String::from_utf8_lossy(&sent)
            .lines()
            .filter(|l| {
                l.starts_with("Host:")
                    || l.starts_with("host:")
                    || ["GET ", "PUT ", "POST ", "HEAD ", "DELETE "]
                        .iter()
                        .any(|m| l.starts_with(m))
            })
            .map(str::to_string)
            .collect()
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, rec: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = &rec {
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The binary with `args`, every HTTP request through `proxy`.
fn run_via(proxy: &RecordingProxy, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("HTTP_PROXY", proxy.url())
        .env("http_proxy", proxy.url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .unwrap()
}

#[test]
fn oss_replica_replicates_and_restores_through_virtual_hosted_requests_on_garage() {
    let g = Garage::start();
    let proxy = RecordingProxy::start(g.s3_port);
    let w = Work::new();
    let db = w.path("app.db");
    let endpoint_host = format!("s3.garage.localhost:{}", g.s3_port);
    // Litestream's oss keys; the endpoint as OSS's (`oss-REGION.aliyuncs.com`) would be.
    let cfg = w.config(&format!(
        "dbs:\n  - path: {}\n    replica:\n      type: oss\n      bucket: {}\n      path: db/app\n      endpoint: http://{endpoint_host}\n      region: {REGION}\n      access-key-id: {}\n      secret-access-key: {}\n      upload-rate: 0\n",
        db.display(),
        g.bucket,
        g.key_id,
        g.secret
    ));
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let out = run_via(
        &proxy,
        &["replicate", "-once", "-config", cfg.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..5 {
        insert_rows(&app, 3, 200 + 40 * i);
        let out = run_via(
            &proxy,
            &["replicate", "-once", "-config", cfg.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let want = pages_of_live(&db);
    let restored = w.path("restored.db");
    let out = run_via(
        &proxy,
        &[
            "restore",
            "-config",
            cfg.to_str().unwrap(),
            "-integrity-check",
            "full",
            "-o",
            restored.to_str().unwrap(),
            db.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_pages(
        &want,
        &pages_of_file(&restored),
        "restore of the oss replica",
    );

    // Every request went virtual-hosted: the bucket in the host, never in the path.
    let heads = proxy.heads();
    let vhost = format!("{}.{endpoint_host}", g.bucket);
    let hosts: Vec<&String> = heads
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
        .collect();
    assert!(!hosts.is_empty(), "no request went through the proxy");
    assert!(
        hosts.iter().all(|h| h[5..].trim() == vhost),
        "not all virtual-hosted: {heads:?}"
    );
    let path_style = format!("{endpoint_host}/{}/", g.bucket);
    assert!(
        !heads.iter().any(|l| l.contains(&path_style)),
        "path-style request: {heads:?}"
    );
    // Litestream's S3/OSS layout: the level as four hex digits under the path.
    assert!(
        heads
            .iter()
            .any(|l| l.starts_with("PUT ") && l.contains("/db/app/0000/")),
        "{heads:?}"
    );
}
