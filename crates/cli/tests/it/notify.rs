//! `notify-url` (ours): the replicator POSTs a JSON event when a replica has been failing
//! for `health-failing-after` and when it recovers; a webhook answering 500 gets the event
//! again; no payload carries a secret of the config (an S3 replica's keys, the webhook
//! URL's token). The webhook is a loopback HTTP server written here.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::garage::Garage;
use crate::harness::*;

/// One POST the webhook received.
#[derive(Clone, Debug)]
struct Post {
    line: String,
    body: Vec<u8>,
    /// What the webhook answered.
    status: u16,
}

/// A webhook on loopback answering 500 to its first `fail_first` requests, then 200.
struct Hook {
    port: u16,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Hook {
    fn start(fail_first: usize) -> Hook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let p = posts.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut head_end = None;
                loop {
                    if head_end.is_none() {
                        head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    }
                    if let Some(h) = head_end {
                        let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= h + 4 + len {
                            break;
                        }
                    }
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let h = head_end.unwrap_or(buf.len());
                let line = String::from_utf8_lossy(&buf[..h])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let body = buf.get(h + 4..).unwrap_or_default().to_vec();
                let mut all = p.lock().unwrap();
                let status = if all.len() < fail_first { 500 } else { 200 };
                all.push(Post { line, body, status });
                drop(all);
                let answer = if status == 500 {
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = c.write_all(answer.as_bytes());
            }
        });
        Hook { port, posts }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Delivered events (answered 200), parsed.
    fn events(&self) -> Vec<serde_json::Value> {
        self.posts()
            .iter()
            .filter(|p| p.status == 200)
            .map(|p| serde_json::from_slice(&p.body).expect("a JSON body"))
            .collect()
    }

    fn find(&self, event: &str, replica: &str) -> Option<serde_json::Value> {
        self.events()
            .into_iter()
            .find(|e| e["event"] == event && e["replica"]["name"] == replica)
    }
}

const URL_TOKEN: &str = "hook-token-5e1f";

/// An S3 replica (Garage) made to fail (the server stopped) and fixed (restarted): a
/// `replica.failing` event once the failure has lasted `health-failing-after`, then a
/// `replica.recovered`. The first POST is answered 500 and retried. No payload holds the
/// S3 keys or the webhook URL's token. The file replica beside it goes on throughout.
#[test]
fn failing_and_recovered_events_are_posted() {
    let w = Work::new();
    let mut g = Garage::start();
    let hook = Hook::start(1);
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let replica = w.path("replica");
    let cfg = w.config(&format!(
        "health-failing-after: 2s\nnotify-url: http://127.0.0.1:{}/hook?token={URL_TOKEN}\ndbs:\n  - path: {}\n    replicas:\n      - type: file\n        path: {}\n      - type: s3\n        name: bucket\n        bucket: {}\n        path: notify\n        endpoint: {}\n        region: {}\n        force-path-style: true\n        access-key-id: {}\n        secret-access-key: {}\n",
        hook.port,
        db.display(),
        replica.display(),
        g.bucket,
        g.endpoint(),
        crate::garage::REGION,
        g.key_id,
        g.secret,
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    eventually(Duration::from_secs(20), "a first upload", || {
        replica_max_txid(&replica) >= 1
    });
    assert!(
        hook.posts().is_empty(),
        "an event while all is well: {:?}",
        hook.posts()
    );

    // The object store goes away: uploads to it fail; the event comes once that has
    // lasted 2 s, answered 500 the first time and delivered on a retry.
    g.stop();
    insert_rows(&app, 5, 100);
    eventually(Duration::from_secs(30), "replica.failing", || {
        hook.find("replica.failing", "bucket").is_some()
    });
    let ev = hook.find("replica.failing", "bucket").unwrap();
    assert_eq!(ev["replica"]["type"], "s3");
    assert_eq!(ev["check"], "replica");
    assert_eq!(ev["state"], "failing");
    assert_eq!(ev["database"], db.display().to_string());
    assert!(ev["error"].as_str().is_some_and(|e| !e.is_empty()), "{ev}");
    assert!(ev["host"].as_str().is_some_and(|h| !h.is_empty()), "{ev}");
    assert!(
        ev["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{ev}"
    );
    let since = ev["failing_since_unix_ms"].as_i64().unwrap();
    assert!(
        ev["unix_ms"].as_i64().unwrap() - since >= 2000,
        "reported before health-failing-after: {ev}"
    );
    let posts = hook.posts();
    assert_eq!(posts[0].status, 500, "{posts:?}");
    assert!(posts[0].line.starts_with("POST /hook?token="), "{posts:?}");
    assert!(
        posts[1..]
            .iter()
            .any(|p| p.body == posts[0].body && p.status == 200),
        "the event answered 500 was not sent again: {posts:?}"
    );
    assert!(r.log_text().contains("notify: POST failed; will retry"));
    assert!(hook.find("replica.recovered", "bucket").is_none());

    // Back: uploads resume, and the recovery is posted.
    g.restart();
    insert_rows(&app, 5, 100);
    eventually(Duration::from_secs(60), "replica.recovered", || {
        hook.find("replica.recovered", "bucket").is_some()
    });
    let ev = hook.find("replica.recovered", "bucket").unwrap();
    assert_eq!(ev["state"], "recovered");
    assert_eq!(ev["error"], serde_json::Value::Null);
    // Neither the file replica nor the database ever failed.
    assert!(
        hook.events()
            .iter()
            .all(|e| e["replica"]["name"] == "bucket"),
        "{:?}",
        hook.events()
    );

    let log_path = r.log.clone();
    assert_eq!(r.stop(), 0);
    for p in &hook.posts() {
        for secret in [g.secret.as_str(), g.key_id.as_str(), URL_TOKEN] {
            assert!(
                !p.body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a payload holds {secret}: {}",
                String::from_utf8_lossy(&p.body)
            );
        }
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains(URL_TOKEN),
        "the webhook token reached the log"
    );
    assert!(!log.contains(&g.secret), "the S3 secret reached the log");
    // Replication went on: both replicas restore to the source.
    let want = pages_of_live(&db);
    restore_and_compare(&cfg, &db, &w.path("file.db"), &want, &["-replica", "file"]);
    restore_and_compare(&cfg, &db, &w.path("s3.db"), &want, &["-replica", "bucket"]);
}

/// A validation (`validation-interval`) that finds a TXID gap posts `validation.failing`
/// with the fault; once the missing file is back, the next passing validation posts
/// `validation.recovered`.
#[test]
fn validation_failure_and_recovery_are_posted() {
    let w = Work::new();
    let hook = Hook::start(0);
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 20, 100);
    let replica = w.path("replica");
    let cfg = w.config(&format!(
        "notify-url: http://127.0.0.1:{}/hook\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n      validation-interval: 300ms\n",
        hook.port,
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    // Five waves, each uploaded before the next: at least five L0 files.
    for _ in 0..5 {
        let before = replica_max_txid(&replica);
        insert_rows(&app, 3, 200);
        eventually(Duration::from_secs(10), "the wave uploaded", || {
            replica_max_txid(&replica) > before
        });
    }
    eventually(Duration::from_secs(20), "a passing validation", || {
        r.log_text().contains("replica validation ok")
    });
    assert!(hook.posts().is_empty(), "{:?}", hook.posts());

    // A middle L0 file goes: a gap.
    let mut files: Vec<_> = std::fs::read_dir(replica.join("ltx/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let victim = files[files.len() / 2].clone();
    let saved = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    eventually(Duration::from_secs(20), "validation.failing", || {
        hook.events()
            .iter()
            .any(|e| e["event"] == "validation.failing")
    });
    let ev = hook
        .events()
        .into_iter()
        .find(|e| e["event"] == "validation.failing")
        .unwrap();
    assert_eq!(ev["check"], "validation");
    assert_eq!(ev["replica"]["name"], "file");
    assert_eq!(ev["database"], db.display().to_string());
    let err = ev["error"].as_str().unwrap();
    let stem = victim.file_stem().unwrap().to_str().unwrap();
    let (vmin, _) = stem.split_once('-').unwrap();
    assert!(
        err.contains(vmin.trim_start_matches('0')) || err.contains(vmin),
        "{err}"
    );

    // Back: the next validation passes.
    std::fs::write(&victim, &saved).unwrap();
    eventually(Duration::from_secs(20), "validation.recovered", || {
        hook.events()
            .iter()
            .any(|e| e["event"] == "validation.recovered")
    });
    assert_eq!(r.stop(), 0);
}
