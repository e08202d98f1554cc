//! Single-writer leases kept in the replica itself, and the fencing of every write made
//! under one.
//!
//! Owns: the lease record (`lease.json` at the replica root, spelled by
//! [`LEASE_NAME`]), taking it (conditional create, or compare-and-swap of a
//! record seen unchanged for its whole TTL), renewing and releasing it by compare-and-swap
//! on its tag, the holder's local validity by the monotonic clock, and [`fence`], the
//! store wrapper that refuses every write the holder makes outside that validity and
//! keeps other epochs' late writes out of the history. The reasoning and the guarantees
//! are invariants E1-E7 in `docs/design.md`.
//!
//! Does not: decide when to promote (the CLI's `standby`), apply a replica to a database
//! (`restore::follow`), or run replication (`replicate`); it is fed a store by the CLI and
//! feeds the uploader a fenced store.
//!
//! Clocks: expiry is never judged by comparing wall clocks of two hosts. The holder
//! counts its validity from just before it sent its last successful write of the record
//! (`ttl - margin`); any other host counts expiry from the moment it first saw the
//! record's current tag (`ttl`). Both by monotonic clocks, so a frozen or partitioned
//! holder stops before anyone else may start, assuming clock rates agree within
//! `margin / ttl`. The wall-clock times in the record are for people and `status`.

pub mod fence;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ltx::TxId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::storage::layout::LEASE_NAME;
use crate::storage::{ETag, ErrorKind, ReplicaStore, StorageError};

/// Default lease TTL: a dead primary is replaced after about this long.
pub const DEFAULT_TTL: Duration = crate::defaults::LEASE_TTL;

/// How a lease is held and judged.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Who we are, written into the record (host name by default).
    pub owner: String,
    pub ttl: Duration,
    /// How often the holder renews; default a third of the TTL.
    pub renew_interval: Duration,
}

impl LeaseOptions {
    pub fn new(owner: impl Into<String>, ttl: Duration) -> LeaseOptions {
        LeaseOptions {
            owner: owner.into(),
            ttl,
            renew_interval: ttl / 3,
        }
    }

    /// The holder stops writing this long before its lease would expire for others.
    pub fn margin(&self) -> Duration {
        self.ttl / 4
    }
}

/// The lease object's content (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub owner: String,
    /// Bumped by every takeover; the first holder has epoch 1.
    pub epoch: u64,
    pub ttl_ms: u64,
    /// Wall clock of the holder at the last write, Unix ms (informational).
    pub renewed_at_ms: i64,
    /// `renewed_at_ms + ttl_ms` (informational: expiry is judged by observation).
    pub expires_at_ms: i64,
    /// The first TXID written in this epoch, `None` until the holder has listed the
    /// replica (0 in the JSON, as before).
    #[serde(with = "txid_or_zero")]
    pub start_txid: Option<TxId>,
    /// Bumped by every write of the record, so its content (and tag) never repeats.
    pub version: u64,
    /// Set by a holder that stopped cleanly: anyone may take the lease at once.
    #[serde(default)]
    pub released: bool,
}

impl LeaseRecord {
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(self).expect("lease record serializes"))
    }

    fn decode(location: &str, data: &[u8]) -> Result<LeaseRecord, LeaseError> {
        serde_json::from_slice(data).map_err(|e| LeaseError::Corrupt {
            location: location.to_string(),
            detail: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease: {0}")]
    Storage(#[from] StorageError),
    #[error("{location}: lease lost to {owner} (epoch {epoch})")]
    Lost {
        location: String,
        owner: String,
        epoch: u64,
    },
    #[error("{location}: {LEASE_NAME} is not a lease record: {detail}")]
    Corrupt { location: String, detail: String },
}

impl LeaseError {
    /// Retrying will not help: the backend cannot hold a lease, or the record is not one.
    pub fn is_permanent(&self) -> bool {
        match self {
            LeaseError::Storage(e) => !e.is_retryable(),
            LeaseError::Corrupt { .. } => true,
            LeaseError::Lost { .. } => false,
        }
    }
}

/// This process's part in a lease, as `status`, metrics and logs show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We hold the lease.
    Primary,
    /// `standby`: following the replica, promoted when the lease expires or is released.
    Standby,
    /// `replicate` waiting to take a lease another process holds.
    Waiting,
}

impl Role {
    /// `primary`, `standby` or `waiting`: the `role` label of the lease metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Waiting => "waiting",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the lease looks like to one observer, for `status`, metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// Our part in the lease; `None` until the lease was first read.
    pub role: Option<Role>,
    pub holder: String,
    pub epoch: u64,
    /// The holder's stated expiry, Unix ms (0: no lease).
    pub expires_at_ms: i64,
    /// Standby only: TXID applied locally, and how far behind the replica it is.
    pub applied_txid: u64,
    pub lag_ms: u64,
}

/// Shared, live [`LeaseView`].
#[derive(Debug, Default)]
pub struct LeaseStatus(Mutex<LeaseView>);

impl LeaseStatus {
    pub fn get(&self) -> LeaseView {
        self.0.lock().expect("lease status").clone()
    }
    pub fn update(&self, f: impl FnOnce(&mut LeaseView)) {
        f(&mut self.0.lock().expect("lease status"))
    }
    fn show(&self, role: Role, r: &LeaseRecord) {
        self.update(|v| {
            v.role = Some(role);
            v.holder = r.owner.clone();
            v.epoch = r.epoch;
            v.expires_at_ms = if r.released { 0 } else { r.expires_at_ms };
        })
    }
}

/// Tracks how long the lease object has kept one tag, by our monotonic clock.
#[derive(Debug, Default)]
pub struct Observer {
    seen: Option<(ETag, Instant)>,
}

impl Observer {
    /// Records the tag now seen; returns how long it has been unchanged.
    pub fn observe(&mut self, tag: &ETag) -> Duration {
        match &self.seen {
            Some((t, since)) if t == tag => since.elapsed(),
            _ => {
                self.seen = Some((tag.clone(), Instant::now()));
                Duration::ZERO
            }
        }
    }
}

/// The outcome of [`Lease::try_acquire`].
#[derive(Debug)]
pub enum Acquire {
    /// We hold it now. `previous` is the record we replaced (`None`: there was none).
    Acquired { previous: Option<LeaseRecord> },
    /// Someone else holds it; their record has been unchanged this long.
    HeldBy {
        record: LeaseRecord,
        unchanged_for: Duration,
    },
}

#[derive(Debug)]
struct Held {
    record: LeaseRecord,
    etag: ETag,
    /// Writes are allowed from `not_before` until `valid_until`.
    not_before: Instant,
    valid_until: Instant,
}

/// One host's handle on one replica's lease.
pub struct Lease {
    store: Arc<dyn ReplicaStore>,
    opts: LeaseOptions,
    held: Mutex<Option<Held>>,
    pub status: Arc<LeaseStatus>,
}

impl Lease {
    pub fn new(store: Arc<dyn ReplicaStore>, opts: LeaseOptions) -> Lease {
        Lease {
            store,
            opts,
            held: Mutex::new(None),
            status: Arc::new(LeaseStatus::default()),
        }
    }

    pub fn options(&self) -> &LeaseOptions {
        &self.opts
    }

    pub fn location(&self) -> &str {
        self.store.location()
    }

    /// The record and its tag, or `None` when there is no lease object.
    pub async fn read(&self) -> Result<Option<(LeaseRecord, ETag)>, LeaseError> {
        match self.store.named()?.get_name_versioned(LEASE_NAME).await {
            Ok((data, tag)) => Ok(Some((
                LeaseRecord::decode(self.store.location(), &data)?,
                tag,
            ))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn record(
        &self,
        epoch: u64,
        start_txid: Option<TxId>,
        version: u64,
        released: bool,
    ) -> LeaseRecord {
        let now = now_ms();
        LeaseRecord {
            owner: self.opts.owner.clone(),
            epoch,
            ttl_ms: self.opts.ttl.as_millis() as u64,
            renewed_at_ms: now,
            expires_at_ms: now + self.opts.ttl.as_millis() as i64,
            start_txid,
            version,
            released,
        }
    }

    /// Takes the lease if it is free: absent, released, or unchanged for its whole TTL by
    /// `observer`'s count. With `force` (an operator's promotion) takes it even from a
    /// live holder; our writes then wait out the old holder's TTL, by which time it has
    /// stopped writing (invariant E2).
    pub async fn try_acquire(
        &self,
        observer: &mut Observer,
        force: bool,
    ) -> Result<Acquire, LeaseError> {
        let current = self.read().await?;
        let (previous, tag) = match current {
            None => (None, None),
            Some((r, tag)) => {
                let unchanged_for = observer.observe(&tag);
                let expired = unchanged_for >= r.ttl().max(self.opts.ttl);
                if !(r.released || expired || force) {
                    self.status.show(Role::Waiting, &r);
                    return Ok(Acquire::HeldBy {
                        record: r,
                        unchanged_for,
                    });
                }
                (Some(r), Some(tag))
            }
        };
        let epoch = previous.as_ref().map_or(1, |r| r.epoch + 1);
        let version = previous.as_ref().map_or(1, |r| r.version + 1);
        let live_before = previous
            .as_ref()
            .filter(|r| !r.released && force)
            .map(|r| r.ttl());
        let rec = self.record(epoch, None, version, false);
        let sent = Instant::now();
        let r = match &tag {
            None => {
                self.store
                    .named()?
                    .create_name(LEASE_NAME, rec.encode())
                    .await
            }
            Some(t) => {
                self.store
                    .named()?
                    .put_name_if_match(LEASE_NAME, rec.encode(), t)
                    .await
            }
        };
        match r {
            Ok(etag) => {
                let not_before = sent + live_before.unwrap_or(Duration::ZERO);
                self.status.show(Role::Primary, &rec);
                *self.held.lock().expect("lease") = Some(Held {
                    record: rec,
                    etag,
                    not_before,
                    valid_until: sent + self.opts.ttl - self.opts.margin(),
                });
                Ok(Acquire::Acquired { previous })
            }
            // Someone else wrote first: it is theirs.
            Err(e) if matches!(e.kind(), ErrorKind::Precondition | ErrorKind::NotFound) => {
                match self.read().await? {
                    Some((record, tag)) => {
                        let unchanged_for = observer.observe(&tag);
                        Ok(Acquire::HeldBy {
                            record,
                            unchanged_for,
                        })
                    }
                    None => Box::pin(self.try_acquire(observer, force)).await,
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Rewrites our record (same epoch, next version), with `start_txid` when given.
    async fn rewrite(&self, start_txid: Option<TxId>, released: bool) -> Result<(), LeaseError> {
        let (rec, tag) = {
            let g = self.held.lock().expect("lease");
            let h = g.as_ref().ok_or_else(|| self.lost_unknown())?;
            (
                self.record(
                    h.record.epoch,
                    start_txid.or(h.record.start_txid),
                    h.record.version + 1,
                    released,
                ),
                h.etag.clone(),
            )
        };
        let sent = Instant::now();
        match self
            .store
            .named()?
            .put_name_if_match(LEASE_NAME, rec.encode(), &tag)
            .await
        {
            Ok(etag) => {
                let mut g = self.held.lock().expect("lease");
                if let Some(h) = g.as_mut() {
                    h.valid_until = if released {
                        sent
                    } else {
                        sent + self.opts.ttl - self.opts.margin()
                    };
                    h.record = rec.clone();
                    h.etag = etag;
                }
                self.status.show(Role::Primary, &rec);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::Precondition | ErrorKind::NotFound) => {
                *self.held.lock().expect("lease") = None;
                let (owner, epoch) = match self.read().await {
                    Ok(Some((r, _))) => {
                        self.status.show(Role::Standby, &r);
                        (r.owner, r.epoch)
                    }
                    _ => (String::from("(nobody)"), 0),
                };
                Err(LeaseError::Lost {
                    location: self.store.location().to_string(),
                    owner,
                    epoch,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn lost_unknown(&self) -> LeaseError {
        LeaseError::Lost {
            location: self.store.location().to_string(),
            owner: "(unknown)".into(),
            epoch: 0,
        }
    }

    /// Records the first TXID of our epoch in the record.
    pub async fn set_start_txid(&self, txid: TxId) -> Result<(), LeaseError> {
        self.rewrite(Some(txid), false).await
    }

    /// Extends our validity; `Lost` when someone else has taken the lease.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        self.rewrite(None, false).await
    }

    /// Gives the lease up (after a clean stop): the next holder need not wait.
    pub async fn release(&self) -> Result<(), LeaseError> {
        self.rewrite(None, true).await?;
        *self.held.lock().expect("lease") = None;
        Ok(())
    }

    /// Our epoch and its first TXID (`None` until recorded), while we may write; `None`
    /// otherwise (not held, not yet allowed, or our validity ran out without a renewal).
    pub fn writable(&self) -> Option<(u64, Option<TxId>)> {
        let g = self.held.lock().expect("lease");
        let h = g.as_ref()?;
        let now = Instant::now();
        (now >= h.not_before && now < h.valid_until)
            .then_some((h.record.epoch, h.record.start_txid))
    }

    /// Until when we may write, if we hold the lease.
    pub fn valid_until(&self) -> Option<Instant> {
        self.held
            .lock()
            .expect("lease")
            .as_ref()
            .map(|h| h.valid_until)
    }

    /// When our writes may begin (after a forced takeover), if we hold the lease.
    pub fn not_before(&self) -> Option<Instant> {
        self.held
            .lock()
            .expect("lease")
            .as_ref()
            .map(|h| h.not_before)
    }

    pub fn epoch(&self) -> Option<u64> {
        self.held
            .lock()
            .expect("lease")
            .as_ref()
            .map(|h| h.record.epoch)
    }
}

/// A TXID in the lease record's JSON: a number, 0 for none (the record's format since
/// leases were introduced).
mod txid_or_zero {
    use ltx::TxId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<TxId>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.map_or(0, TxId::get))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TxId>, D::Error> {
        Ok(TxId::new(u64::deserialize(d)?).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;

    fn lease(store: &Arc<dyn ReplicaStore>, owner: &str, ttl_ms: u64) -> Lease {
        Lease::new(
            store.clone(),
            LeaseOptions::new(owner, Duration::from_millis(ttl_ms)),
        )
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_takeover_after_ttl() {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn ReplicaStore> = Arc::new(FileStore::new(d.path()));
        let a = lease(&store, "a", 400);
        let b = lease(&store, "b", 400);
        let (mut oa, mut ob) = (Observer::default(), Observer::default());
        assert!(matches!(
            a.try_acquire(&mut oa, false).await.unwrap(),
            Acquire::Acquired { previous: None }
        ));
        assert_eq!(a.writable().map(|w| w.0), Some(1));
        match b.try_acquire(&mut ob, false).await.unwrap() {
            Acquire::HeldBy { record, .. } => assert_eq!(record.owner, "a"),
            other => panic!("{other:?}"),
        }
        let seven = TxId::new(7).unwrap();
        a.set_start_txid(seven).await.unwrap();
        assert_eq!(a.writable(), Some((1, Some(seven))));
        // a stops renewing: its own validity ends before b may take over.
        tokio::time::sleep(Duration::from_millis(320)).await;
        assert_eq!(a.writable(), None);
        let mut took = false;
        for _ in 0..20 {
            if let Acquire::Acquired { previous } = b.try_acquire(&mut ob, false).await.unwrap() {
                assert_eq!(previous.unwrap().start_txid, Some(seven));
                took = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(took);
        assert_eq!(b.epoch(), Some(2));
        // a's renewal is refused: it lost the lease.
        match a.renew().await {
            Err(LeaseError::Lost { owner, epoch, .. }) => {
                assert_eq!((owner.as_str(), epoch), ("b", 2))
            }
            other => panic!("{other:?}"),
        }
        b.release().await.unwrap();
        assert!(matches!(
            a.try_acquire(&mut oa, false).await.unwrap(),
            Acquire::Acquired { .. }
        ));
        assert_eq!(a.epoch(), Some(3));
    }

    #[tokio::test]
    async fn forced_takeover_waits_out_the_old_holder() {
        let d = tempfile::tempdir().unwrap();
        let store: Arc<dyn ReplicaStore> = Arc::new(FileStore::new(d.path()));
        let a = lease(&store, "a", 60_000);
        let b = lease(&store, "b", 60_000);
        a.try_acquire(&mut Observer::default(), false)
            .await
            .unwrap();
        assert!(matches!(
            b.try_acquire(&mut Observer::default(), true).await.unwrap(),
            Acquire::Acquired { .. }
        ));
        assert_eq!(b.epoch(), Some(2));
        assert_eq!(b.writable(), None, "must wait for a's TTL");
        assert!(b.not_before().unwrap() > Instant::now() + Duration::from_secs(50));
        assert!(matches!(a.renew().await, Err(LeaseError::Lost { .. })));
    }
}
