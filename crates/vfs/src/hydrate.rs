//! Hydration (`hydrate=1`): the whole database at one TXID downloaded in the background
//! into a local file, which then serves the pages it holds.
//!
//! Owns: starting the download (exactly `restore`'s own `run::apply` of the plan the
//! reader serves, so the local copy is what `restore -txid` writes, verified as it does),
//! its progress and outcome, where the copy lives (a private temp directory, mode 0700,
//! inside `cache_dir` when there is one, else in the system's temp directory; the
//! download stopped and the copy removed when the database closes), and reading a page
//! from it.
//!
//! Which pages it may serve is the reader's rule (`reader`): a page whose newest version
//! in the state served is in a file ending at or before the hydrated TXID, in a state at
//! or after it; pages newer than it still come from their LTX files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::progress::{Observer, Phase, Progress};
use engine::restore::output::{ApplyOptions, IntegrityCheck};
use engine::restore::run::{self, Picked, Planned};
use ltx::TxId;

use crate::error::VfsError;

/// Files downloaded at once (restore's default is 8; this runs beside queries).
const PARALLELISM: usize = 4;

enum State {
    Running,
    Done(File),
    Failed(String),
}

struct Shared {
    state: Mutex<State>,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
}

impl Observer for Shared {
    fn start(&self, phase: Phase, total_bytes: Option<u64>) {
        if phase == Phase::FetchApply {
            self.bytes_total
                .store(total_bytes.unwrap_or(0), Ordering::Relaxed);
        }
    }
    fn advance(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }
    fn finish(&self, _phase: Phase) {}
}

/// One background download and its local copy.
pub struct Hydration {
    pub txid: TxId,
    pub page_bytes: u64,
    shared: Arc<Shared>,
    /// The download, stopped when the database closes.
    task: tokio::task::JoinHandle<()>,
    /// Holds the copy; removed on drop.
    _dir: tempfile::TempDir,
}

impl Drop for Hydration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What `PRAGMA sqlite_replicate_stats` shows of it.
#[derive(serde::Serialize)]
pub struct Status {
    pub state: &'static str,
    pub txid: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Hydration {
    /// Starts downloading `plan` of `picked` into a new private directory under `dir`
    /// (or the system's temp directory).
    pub fn start(
        picked: &Picked,
        plan: &engine::history::plan::Plan,
        page_bytes: u64,
        dir: Option<&Path>,
    ) -> Result<Hydration, VfsError> {
        let mut b = tempfile::Builder::new();
        b.prefix("hydrate-");
        let tmp = match dir {
            Some(d) => b.tempdir_in(d),
            None => b.tempdir(),
        }
        .map_err(|e| {
            VfsError::Setup(format!(
                "hydrate: cannot make a directory for the local copy: {e}"
            ))
        })?;
        let out: PathBuf = tmp.path().join("db");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::Running),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(plan.total_bytes()),
        });
        let opts = ApplyOptions {
            parallelism: PARALLELISM,
            integrity: IntegrityCheck::None,
            force: false,
            progress: Progress::new(shared.clone()),
        };
        let (picked, planned, sh) = (picked.clone(), Planned::Ltx(plan.clone()), shared.clone());
        let task = crate::fetch::spawn_task(async move {
            let done = run::apply(&picked, &planned, &out, &opts)
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
                .and_then(|_| {
                    File::open(&out).map_err(|e| format!("opening {}: {e}", out.display()))
                });
            let state = match done {
                Ok(f) => State::Done(f),
                Err(e) => {
                    let e = VfsError::Setup(format!(
                        "hydrate: downloading TXID {} failed (pages stay fetched on demand): {e}",
                        planned_txid(&planned)
                    ));
                    crate::host::report(&e);
                    State::Failed(e.to_string())
                }
            };
            *sh.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        });
        Ok(Hydration {
            txid: plan.target_txid,
            page_bytes,
            shared,
            task,
            _dir: tmp,
        })
    }

    /// Page `pgno` of the local copy, once it is complete.
    pub fn page(&self, pgno: u32) -> Option<Result<Arc<[u8]>, VfsError>> {
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let State::Done(f) = &*state else {
            return None;
        };
        let mut page = vec![0u8; self.page_bytes as usize];
        Some(
            read_at(f, &mut page, u64::from(pgno - 1) * self.page_bytes)
                .map(|()| Arc::from(page))
                .map_err(|e| {
                    VfsError::Setup(format!(
                        "hydrate: reading page {pgno} of the local copy: {e}"
                    ))
                }),
        )
    }

    pub fn progress(&self) -> Status {
        let state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let (state, error) = match &*state {
            State::Running => ("running", None),
            State::Done(_) => ("done", None),
            State::Failed(e) => ("failed", Some(e.clone())),
        };
        Status {
            state,
            txid: self.txid.to_string(),
            bytes_done: self.shared.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.shared.bytes_total.load(Ordering::Relaxed),
            error,
        }
    }
}

fn planned_txid(p: &Planned) -> String {
    match p {
        Planned::Ltx(p) => p.target_txid.to_string(),
        Planned::V3(_) => String::new(),
    }
}

fn read_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    engine::platform::FileExt::read_exact_at(f, buf, at)
}
