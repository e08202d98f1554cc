//! The one way a restore runs, whoever asks for it (`restore`, `replicate
//! -restore-if-db-not-exists`, `standby`, the drill): pick the replica, list it, plan,
//! apply; the caller may then follow ([`Restored::follow`]).
//!
//! Owns: choosing among a database's replicas (the one whose LTX history reaches the
//! newest TXID; with no LTX history anywhere and the fallback allowed, the one whose
//! Litestream 0.3 generations hold the newest file, as 0.3 picks a generation), the rules
//! that tie a request to a kind of replica (a TXID, a time or following needs LTX history;
//! `generation` only applies to 0.3 replicas), and the errors naming the replica.
//! [`restore`] runs every step; [`pick`], [`plan`] and [`apply`] are the same steps for
//! a caller that measures between them (the drill).
//!
//! Does not: parse arguments or print (the CLI), plan (`history::plan`, `v3::plan_v3`),
//! fetch or write pages (`apply`, `v3`), or build stores (the CLI, from its config).
//!
//! Requests: one LIST per level per candidate (plus a HEAD per file for a point in time on
//! object stores), the 0.3 listing only when no candidate holds LTX files, then the
//! planned files' ranged GETs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ltx::TxId;
use tokio::sync::watch;

use super::follow::{self, FollowError};
use super::output::{ApplyError, ApplyOptions, ApplyReport};
use super::v3::{self, V3Plan, V3PlanError};
use crate::history::plan::{self as planner, Listing, Plan, PlanError, Target};
use crate::history::{list_all, Times};
use crate::progress::Phase;
use crate::storage::layout::v3::{GenerationId, V3File};
use crate::storage::{ReplicaStore, StorageError};

/// Ranged reads in flight when the caller does not say (`restore -parallelism`'s default).
pub const DEFAULT_PARALLELISM: usize = 8;

/// A replica a restore may use: its display name and its store.
pub type Candidate = (String, Arc<dyn ReplicaStore>);

/// Whether a replica holding only Litestream 0.3 generations may be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V3Fallback {
    /// No: the caller needs a TXID (a standby follows, a drill picks TXIDs). The 0.3
    /// layout is then not even listed.
    Never,
    /// Yes, to its latest state; `generation` picks one (default: 0.3's own choice).
    Latest { generation: Option<String> },
}

/// What to restore and how.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub target: Target,
    pub apply: ApplyOptions,
    pub v3: V3Fallback,
    /// The caller will follow the replica afterwards: refuses a 0.3 replica (no TXIDs).
    pub follow: bool,
    /// Plan only: [`Outcome::DryRun`], nothing fetched or written.
    pub dry_run: bool,
}

impl RestoreOptions {
    /// The latest state, SQLite's quick check, [`DEFAULT_PARALLELISM`], no 0.3 fallback.
    pub fn latest(integrity: super::output::IntegrityCheck) -> RestoreOptions {
        RestoreOptions {
            target: Target::Latest,
            apply: ApplyOptions {
                parallelism: DEFAULT_PARALLELISM,
                integrity,
                force: false,
                progress: Default::default(),
            },
            v3: V3Fallback::Never,
            follow: false,
            dry_run: false,
        }
    }
}

/// What a replica holds, as far as a restore cares.
#[derive(Clone, Debug)]
pub enum Found {
    /// LTX history reaching `newest`.
    Ltx { listing: Listing, newest: TxId },
    /// No LTX file, but Litestream 0.3 generations (never empty).
    V3 { files: Vec<V3File> },
    /// Nothing to restore.
    Nothing,
}

/// The replica chosen and what it holds.
#[derive(Clone)]
pub struct Picked {
    pub name: String,
    pub store: Arc<dyn ReplicaStore>,
    pub found: Found,
}

impl Picked {
    pub fn location(&self) -> &str {
        self.store.location()
    }
}

/// The files a restore will fetch.
#[derive(Clone, Debug)]
pub enum Planned {
    Ltx(Plan),
    V3(V3Plan),
}

impl Planned {
    /// The plan as JSON, for `restore -dry-run -json`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Planned::Ltx(p) => p.to_json(),
            Planned::V3(p) => p.to_json(),
        }
    }
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Planned::Ltx(p) => p.fmt(f),
            Planned::V3(p) => p.fmt(f),
        }
    }
}

/// The state a restored database is at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoredAt {
    /// This TXID of LTX history.
    Txid(TxId),
    /// The end of this WAL index of a Litestream 0.3 generation.
    V3 {
        generation: GenerationId,
        wal_index: u32,
    },
}

/// A database put in place.
#[derive(Clone)]
pub struct Restored {
    pub replica: String,
    pub store: Arc<dyn ReplicaStore>,
    pub output: PathBuf,
    pub at: RestoredAt,
    pub report: ApplyReport,
}

impl Restored {
    /// The TXID restored (`None` for a 0.3 generation).
    pub fn txid(&self) -> Option<TxId> {
        match self.at {
            RestoredAt::Txid(t) => Some(t),
            RestoredAt::V3 { .. } => None,
        }
    }

    /// Keeps the output current with the replica it came from, polling every `interval`,
    /// until `stop` turns true (`follow::follow`). A 0.3 restore cannot be followed;
    /// [`restore`] refuses one when [`RestoreOptions::follow`] is set.
    pub async fn follow(
        &self,
        interval: Duration,
        stop: watch::Receiver<bool>,
    ) -> Result<(), RestoreError> {
        let Some(txid) = self.txid() else {
            return Err(RestoreError::V3NeedsLatest {
                replica: self.replica.clone(),
                location: self.store.location().to_string(),
            });
        };
        follow::follow(self.store.clone(), &self.output, txid, interval, stop)
            .await
            .map_err(RestoreError::Follow)
    }
}

/// What [`restore`] did.
pub enum Outcome {
    /// No candidate holds a backup (nothing was written).
    NoBackup {
        replica: String,
        location: String,
    },
    /// `dry_run`: the plan, nothing fetched or written.
    DryRun {
        picked: Picked,
        plan: Planned,
    },
    Restored(Restored),
}

/// Why a restore failed, naming the replica or the output.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("no replica to restore from")]
    NoReplica,
    #[error("listing replica {replica}")]
    List {
        replica: String,
        #[source]
        source: StorageError,
    },
    #[error("replica {replica} ({location}) holds no backup")]
    NoBackup { replica: String, location: String },
    #[error("-generation applies to Litestream 0.3 replicas (generations/), but replica {replica} holds LTX files")]
    GenerationOnLtx { replica: String },
    #[error("replica {replica} ({location}) holds only Litestream 0.3 generations: -txid, -timestamp and -f need LTX history; without them the latest state is restored")]
    V3NeedsLatest { replica: String, location: String },
    #[error("planning restore from replica {replica} ({location})")]
    Plan {
        replica: String,
        location: String,
        #[source]
        source: PlanError,
    },
    #[error("planning restore from replica {replica} ({location}) (Litestream 0.3 generations)")]
    V3Plan {
        replica: String,
        location: String,
        #[source]
        source: Box<V3PlanError>,
    },
    #[error("restoring {output}")]
    Apply {
        output: PathBuf,
        #[source]
        source: Box<ApplyError>,
    },
    #[error("following the replica")]
    Follow(#[source] FollowError),
}

impl RestoreError {
    /// What the operator can do about a 0.3 planning error (the CLI prints it beside).
    pub fn v3_hint(&self) -> Option<&'static str> {
        match self {
            RestoreError::V3Plan { source, .. } => source.hint(),
            _ => None,
        }
    }
}

/// Restores from the best of `candidates` into `output`: [`pick`], [`plan`], then
/// [`apply`] (or only the plan, with `dry_run`). Listing errors fail the restore; a
/// backend that cannot list 0.3 generations counts as holding none (logged).
pub async fn restore(
    candidates: &[Candidate],
    output: &Path,
    opts: &RestoreOptions,
) -> Result<Outcome, RestoreError> {
    let times = match opts.target {
        Target::Timestamp(_) => Times::Exact,
        _ => Times::Listed,
    };
    let progress = &opts.apply.progress;
    progress.start(Phase::Listing, None);
    let picked = pick(candidates, times, !matches!(opts.v3, V3Fallback::Never)).await?;
    progress.finish(Phase::Listing);
    if matches!(picked.found, Found::Nothing) {
        return Ok(Outcome::NoBackup {
            location: picked.location().to_string(),
            replica: picked.name,
        });
    }
    let planned = plan(&picked, opts)?;
    if opts.dry_run {
        return Ok(Outcome::DryRun {
            picked,
            plan: planned,
        });
    }
    Ok(Outcome::Restored(
        apply(&picked, &planned, output, &opts.apply).await?,
    ))
}

/// Lists every candidate and picks one: the LTX history reaching the newest TXID (the
/// first on a tie); failing that, with `v3`, the 0.3 generations holding the newest file;
/// failing that, the first candidate, holding [`Found::Nothing`]. No candidate at all is
/// [`RestoreError::NoReplica`].
pub async fn pick(
    candidates: &[Candidate],
    times: Times,
    v3: bool,
) -> Result<Picked, RestoreError> {
    let mut best: Option<(&Candidate, Listing, TxId)> = None;
    for c in candidates {
        let listing = list_all(c.1.as_ref(), times)
            .await
            .map_err(|source| RestoreError::List {
                replica: c.0.clone(),
                source,
            })?;
        if let Some(newest) = planner::latest_txid(&listing) {
            if best.as_ref().is_none_or(|(_, _, b)| newest > *b) {
                best = Some((c, listing, newest));
            }
        }
    }
    if let Some(((name, store), listing, newest)) = best {
        return Ok(Picked {
            name: name.clone(),
            store: store.clone(),
            found: Found::Ltx { listing, newest },
        });
    }
    if v3 {
        if let Some(((name, store), files)) = newest_v3(candidates).await {
            return Ok(Picked {
                name: name.clone(),
                store: store.clone(),
                found: Found::V3 { files },
            });
        }
    }
    let (name, store) = candidates.first().cloned().ok_or(RestoreError::NoReplica)?;
    Ok(Picked {
        name,
        store,
        found: Found::Nothing,
    })
}

/// Among candidates without LTX files, the one whose Litestream 0.3 generations hold the
/// newest file: 0.3's rule for choosing a generation, applied across replicas. A backend
/// that cannot list them counts as holding none: the error is logged, not fatal, so
/// `-if-replica-exists` still skips an empty replica on such a backend.
async fn newest_v3(candidates: &[Candidate]) -> Option<(&Candidate, Vec<V3File>)> {
    let newest = |f: &[V3File]| f.iter().map(|f| f.modified).max();
    let mut best: Option<(&Candidate, Vec<V3File>)> = None;
    for c in candidates {
        let files = match async { c.1.v3()?.list_v3().await }.await {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(replica = %c.0, error = %e, "cannot list Litestream 0.3 generations");
                continue;
            }
        };
        if best
            .as_ref()
            .is_none_or(|(_, b)| newest(&files) > newest(b))
        {
            best = Some((c, files));
        }
    }
    best
}

/// Plans what `picked` holds for `opts` (a replica holding nothing is
/// [`RestoreError::NoBackup`]).
pub fn plan(picked: &Picked, opts: &RestoreOptions) -> Result<Planned, RestoreError> {
    let (replica, location) = (picked.name.clone(), picked.location().to_string());
    match (&picked.found, &opts.v3) {
        (Found::Nothing, _) => Err(RestoreError::NoBackup { replica, location }),
        (
            Found::Ltx { .. },
            V3Fallback::Latest {
                generation: Some(_),
            },
        ) => Err(RestoreError::GenerationOnLtx { replica }),
        (Found::Ltx { listing, .. }, _) => planner::plan(listing, opts.target)
            .map(Planned::Ltx)
            .map_err(|source| RestoreError::Plan {
                replica,
                location,
                source,
            }),
        (Found::V3 { files }, fallback) => {
            if opts.target != Target::Latest || opts.follow {
                return Err(RestoreError::V3NeedsLatest { replica, location });
            }
            let generation = match fallback {
                V3Fallback::Latest { generation } => generation.as_deref(),
                V3Fallback::Never => None,
            };
            v3::plan_v3(files, generation)
                .map(Planned::V3)
                .map_err(|source| RestoreError::V3Plan {
                    replica,
                    location,
                    source: Box::new(source),
                })
        }
    }
}

/// Fetches and applies `planned` from `picked` into `output` (verified, then put in
/// place: `apply::apply`, `v3::apply_v3`).
pub async fn apply(
    picked: &Picked,
    planned: &Planned,
    output: &Path,
    opts: &ApplyOptions,
) -> Result<Restored, RestoreError> {
    let store = picked.store.clone();
    let (report, at) = match planned {
        Planned::Ltx(p) => (
            super::apply::apply(store, p, output, opts).await,
            RestoredAt::Txid(p.target_txid),
        ),
        Planned::V3(p) => (
            v3::apply_v3(store, p, output, opts).await,
            RestoredAt::V3 {
                generation: p.generation.clone(),
                wal_index: p.last_index(),
            },
        ),
    };
    let report = report.map_err(|source| RestoreError::Apply {
        output: output.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok(Restored {
        replica: picked.name.clone(),
        store: picked.store.clone(),
        output: output.to_path_buf(),
        at,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;
    use crate::storage::layout::LtxKey;
    use ltx::Level;
    use std::time::SystemTime;

    fn t(v: u64) -> TxId {
        TxId::new(v).unwrap()
    }

    /// A file replica holding L0 files named 1..=max (contents do not matter to listing).
    async fn ltx_replica(dir: &Path, name: &str, max: u64) -> Candidate {
        let store = FileStore::new(dir.join(name));
        for i in 1..=max {
            let key = LtxKey::new(Level::L0, t(i), t(i));
            store
                .put(&key, bytes::Bytes::from_static(b"x"), SystemTime::now())
                .await
                .unwrap();
        }
        (name.to_string(), Arc::new(store))
    }

    /// A file replica holding one Litestream 0.3 snapshot.
    fn v3_replica(dir: &Path, name: &str) -> Candidate {
        let snaps = dir
            .join(name)
            .join("generations/0123456789abcdef/snapshots");
        std::fs::create_dir_all(&snaps).unwrap();
        std::fs::write(snaps.join("00000000.snapshot.lz4"), b"x").unwrap();
        (name.to_string(), Arc::new(FileStore::new(dir.join(name))))
    }

    #[tokio::test]
    async fn picks_the_newest_ltx_history_then_0_3_then_the_first_replica() {
        let d = tempfile::tempdir().unwrap();
        let a = ltx_replica(d.path(), "a", 2).await;
        let b = ltx_replica(d.path(), "b", 3).await;
        let old = v3_replica(d.path(), "old");
        let empty = ltx_replica(d.path(), "empty", 0).await;

        let p = pick(&[a.clone(), old.clone(), b.clone()], Times::Listed, true)
            .await
            .unwrap();
        assert_eq!(p.name, "b");
        assert!(matches!(p.found, Found::Ltx { newest, .. } if newest == t(3)));

        // LTX history anywhere wins over 0.3 generations elsewhere.
        let p = pick(&[old.clone(), a], Times::Listed, true).await.unwrap();
        assert_eq!(p.name, "a");

        let p = pick(&[empty.clone(), old.clone()], Times::Listed, true)
            .await
            .unwrap();
        assert_eq!(p.name, "old");
        assert!(matches!(&p.found, Found::V3 { files } if files.len() == 1));

        // Without the fallback the 0.3 layout is not even listed: nothing to restore.
        let p = pick(&[empty.clone(), old], Times::Listed, false)
            .await
            .unwrap();
        assert_eq!(p.name, "empty");
        assert!(matches!(p.found, Found::Nothing));
        assert!(matches!(
            plan(
                &p,
                &RestoreOptions::latest(super::super::output::IntegrityCheck::None)
            ),
            Err(RestoreError::NoBackup { .. })
        ));
        assert!(matches!(
            pick(&[], Times::Listed, true).await,
            Err(RestoreError::NoReplica)
        ));
    }

    #[tokio::test]
    async fn requests_that_need_ltx_history_refuse_a_0_3_replica() {
        let d = tempfile::tempdir().unwrap();
        let old = v3_replica(d.path(), "old");
        let p = pick(&[old], Times::Listed, true).await.unwrap();
        let mut o = RestoreOptions::latest(super::super::output::IntegrityCheck::None);
        o.v3 = V3Fallback::Latest { generation: None };
        o.follow = true;
        assert!(matches!(
            plan(&p, &o),
            Err(RestoreError::V3NeedsLatest { .. })
        ));
        o.follow = false;
        o.target = Target::TxId(t(1));
        assert!(matches!(
            plan(&p, &o),
            Err(RestoreError::V3NeedsLatest { .. })
        ));
        // A generation named for an LTX replica is a mistake, said so.
        let a = ltx_replica(d.path(), "a", 1).await;
        let p = pick(&[a], Times::Listed, true).await.unwrap();
        o.target = Target::Latest;
        o.v3 = V3Fallback::Latest {
            generation: Some("0123456789abcdef".into()),
        };
        assert!(matches!(
            plan(&p, &o),
            Err(RestoreError::GenerationOnLtx { .. })
        ));
    }
}
