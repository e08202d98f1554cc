//! Progress of a large restore (issue 25), as a user sees it: on a terminal (a
//! pseudo-terminal made by Python's `pty` module) a bar per phase that ends at 100%; on a
//! pipe, plain lines every few seconds and no control characters; with `-json`, one JSON
//! event per line. The slow restore runs against a real S3 server (Garage) behind the
//! throttling proxy, so the lines are periodic because the transfer takes seconds, not
//! because the test says so. Every restore is compared page for page with the source.

use std::path::Path;
use std::process::Command;

use crate::faultproxy::{FaultProxy, Faults};
use crate::garage::Garage;
use crate::harness::*;
use crate::netfault::{plain_config, s3_entry};

/// A database of about `mib` MiB of incompressible rows, replicated once into `cfg`'s
/// replica; returns its pages.
fn replicated_db(db: &Path, cfg: &Path, mib: usize) -> Vec<Vec<u8>> {
    let c = app_db(db);
    c.execute_batch("BEGIN").unwrap();
    insert_rows(&c, mib * 4, 256 * 1024);
    c.execute_batch("COMMIT").unwrap();
    drop(c);
    run_ok(&["replicate", "-config", cfg.to_str().unwrap(), "-once"]);
    pages_of_live(db)
}

/// Runs the binary with `args` on a pseudo-terminal (stdin, stdout and stderr), 120
/// columns wide, and returns what the terminal received and whether it exited 0.
fn run_on_pty(args: &[&str]) -> (String, bool) {
    const SCRIPT: &str = r#"
import fcntl, os, pty, struct, subprocess, sys, termios
m, s = pty.openpty()
fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack('HHHH', 30, 120, 0, 0))
p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s, close_fds=True,
                     env=dict(os.environ, TERM='xterm'))
os.close(s)
out = b''
while True:
    try:
        d = os.read(m, 65536)
    except OSError:
        break
    if not d:
        break
    out += d
sys.stdout.buffer.write(out)
sys.exit(p.wait())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(bin())
        .args(args)
        .output()
        .expect("python3 (the pty driver) runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

#[test]
fn restore_on_a_terminal_draws_a_bar_per_phase_ending_at_100_percent() {
    let w = Work::new();
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    let cfg = w.file_config(&db, &replica, "");
    let want = replicated_db(&db, &cfg, 48);
    let out = w.path("restored.db");
    let (screen, ok) = run_on_pty(&[
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        db.to_str().unwrap(),
    ]);
    assert!(ok, "restore on a terminal failed:\n{screen}");
    // indicatif redraws in place: carriage returns and erase-line sequences.
    assert!(
        screen.contains('\r') && screen.contains("\x1b["),
        "no bar drawn:\n{screen:?}"
    );
    for phase in ["listing", "fetch and apply", "verify", "install"] {
        assert!(screen.contains(phase), "no {phase} phase shown:\n{screen}");
    }
    // The fetch bar's last frame is complete: 100%, every byte of the plan.
    let last_fetch = screen
        .split(['\r', '\n'])
        .rfind(|l| l.contains("fetch and apply ["))
        .expect("a fetch bar");
    assert!(
        last_fetch.contains("100%") && last_fetch.contains("[====="),
        "the fetch bar did not end at 100%: {last_fetch:?}"
    );
    assert!(screen.contains("restored "), "no result line:\n{screen}");
    assert_same_pages(&want, &pages_of_file(&out), "restore on a terminal");
}

#[test]
fn restore_on_a_pipe_prints_periodic_lines_without_control_characters() {
    let w = Work::new();
    let g = Garage::start();
    let db = w.path("app.db");
    let cfg = plain_config(
        &w,
        "direct.yml",
        &db,
        &s3_entry(&g, "progress", &g.endpoint()),
    );
    let want = replicated_db(&db, &cfg, 8);
    // About 1 MiB/s per connection: the 8 MiB restore takes several seconds.
    let proxy = FaultProxy::start(
        g.s3_port,
        25,
        Faults {
            bytes_per_sec: 1 << 20,
            ..Faults::none()
        },
    );
    let slow = plain_config(
        &w,
        "slow.yml",
        &db,
        &s3_entry(&g, "progress", &proxy.endpoint()),
    );
    let out = w.path("restored.db");
    let o = Command::new(bin())
        .args([
            "restore",
            "-config",
            slow.to_str().unwrap(),
            "-parallelism",
            "2",
            "-o",
            out.to_str().unwrap(),
            db.to_str().unwrap(),
        ])
        .env("SQLITE_REPLICATE_PROGRESS_INTERVAL", "1s")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "restore failed:\n{err}");
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "control characters on a pipe:\n{err:?}"
    );
    let periodic: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("restore: fetch and apply: ") && l.contains("%)"))
        .collect();
    assert!(
        periodic.len() >= 3,
        "expected a line every second of a fetch taking seconds, got:\n{err}"
    );
    for l in &periodic {
        assert!(
            l.contains(" of 8.") && l.contains("/s") && l.contains("left"),
            "a progress line without total, rate or time left: {l}"
        );
    }
    let pct = |l: &str| -> u64 {
        let open = l.find('(').unwrap();
        l[open + 1..l.find("%)").unwrap()].parse().unwrap()
    };
    let pcts: Vec<u64> = periodic.iter().map(|l| pct(l)).collect();
    assert!(
        pcts.windows(2).all(|p| p[0] <= p[1]),
        "progress went backwards: {pcts:?}"
    );
    for phase in ["listing", "fetch and apply", "verify", "install"] {
        assert!(
            err.contains(&format!("restore: {phase} done in ")),
            "no end of the {phase} phase:\n{err}"
        );
    }
    assert_same_pages(&want, &pages_of_file(&out), "restore through a pipe");

    // -json: the same events, one JSON object per line on stderr; stdout keeps the result.
    let out2 = w.path("restored-json.db");
    let o = Command::new(bin())
        .args([
            "restore",
            "-json",
            "-config",
            cfg.to_str().unwrap(),
            "-o",
            out2.to_str().unwrap(),
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let fetch_end = events
        .iter()
        .find(|e| e["phase"] == "fetch" && e["event"] == "finish")
        .expect("a fetch finish event");
    assert_eq!(fetch_end["bytes"], fetch_end["total_bytes"]);
    let result: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(result["bytes"], fetch_end["total_bytes"]);
    assert_same_pages(&want, &pages_of_file(&out2), "restore with -json");
}

/// The replicator logs the progress of a large first full image (here "large" is made
/// small with a short period): bytes, total and percent, then the end of the work.
#[test]
fn replicate_logs_the_progress_of_a_large_first_full_image() {
    let w = Work::new();
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    let cfg = w.file_config(&db, &replica, "");
    let c = app_db(&db);
    c.execute_batch("BEGIN").unwrap();
    insert_rows(&c, 48 * 4, 256 * 1024);
    c.execute_batch("COMMIT").unwrap();
    drop(c);
    let want = pages_of_live(&db);
    let o = Command::new(bin())
        .args(["replicate", "-config", cfg.to_str().unwrap(), "-once"])
        .env("SQLITE_REPLICATE_PROGRESS_INTERVAL", "10ms")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("full image in progress"))
        .collect();
    assert!(!lines.is_empty(), "no progress logged:\n{err}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("bytes=") && l.contains("total_bytes=") && l.contains("percent=")),
        "{lines:?}"
    );
    assert!(
        err.contains("full image snapshot done"),
        "no end logged:\n{err}"
    );
    restore_and_compare(&cfg, &db, &w.path("restored.db"), &want, &[]);
}
