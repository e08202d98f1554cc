//! Replication progress: the TXID positions that steer replication, and the rules that
//! read them.
//!
//! Owns: where the local captures and each replica stand ([`DbProgress`],
//! [`ReplicaProgress`]), every memory ordering used on them, and the decisions made from
//! them: whether a capture waits for a replica still uploading
//! ([`ReplicaProgress::holds_capture`]), which local L0 files may be pruned
//! ([`ReplicaProgress::prunable`]), and up to which TXID local captures may stay unsynced
//! ([`DbProgress::replicated_floor`]). Written by capture and the uploaders, read by the
//! capture loop; `status` and `report` only copy the positions out for reporters.
//!
//! A TXID position is `Option<TxId>`: `None` before the first capture, or when a replica
//! holds nothing (or is not known yet). `None` orders below every TXID.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ltx::TxId;

/// An `Option<TxId>` shared between threads (stored as a `u64`, 0 for `None`). Stores
/// release and loads acquire: whoever sees a position also sees what was written before
/// it was published (the file, the upload).
#[derive(Debug, Default)]
pub struct AtomicTxId(AtomicU64);

impl AtomicTxId {
    pub fn new(t: Option<TxId>) -> AtomicTxId {
        AtomicTxId(AtomicU64::new(raw(t)))
    }

    pub fn load(&self) -> Option<TxId> {
        TxId::new(self.0.load(Ordering::Acquire)).ok()
    }

    pub fn store(&self, t: Option<TxId>) {
        self.0.store(raw(t), Ordering::Release);
    }
}

/// A position as reporters show it: the TXID, 0 for none.
pub fn raw(t: Option<TxId>) -> u64 {
    t.map_or(0, TxId::get)
}

/// Where the local captures of one database stand.
#[derive(Debug, Default)]
pub struct DbProgress {
    /// Last TXID captured locally.
    local: AtomicTxId,
    /// Highest TXID every replica holds (kept by the capture loop).
    replicated_floor: AtomicTxId,
}

impl DbProgress {
    /// The last TXID captured locally, `None` before the first.
    pub fn local(&self) -> Option<TxId> {
        self.local.load()
    }

    /// Records the local position (a capture written, or the position recovered at
    /// start).
    pub fn set_local(&self, t: Option<TxId>) {
        self.local.store(t);
    }

    /// Highest TXID every replica holds: captures above it are fsynced before our
    /// checkpoint lets the WAL go; those at or below it need not be.
    pub fn replicated_floor(&self) -> Option<TxId> {
        self.replicated_floor.load()
    }

    /// Recomputes the floor from the replicas' positions and returns it (`None` when
    /// some replica holds nothing, or there is no replica).
    pub fn update_floor<'a>(
        &self,
        replicas: impl IntoIterator<Item = &'a ReplicaProgress>,
    ) -> Option<TxId> {
        let floor = replicas
            .into_iter()
            .map(ReplicaProgress::replicated)
            .min()
            .flatten();
        self.replicated_floor.store(floor);
        floor
    }
}

/// Where one replica of one database stands.
#[derive(Debug, Default)]
pub struct ReplicaProgress {
    /// Highest TXID durably stored on the replica.
    replicated: AtomicTxId,
    /// Highest TXID the replica's level 1 covers; `TxId::MAX` when it has no levels.
    compacted: AtomicTxId,
    /// The uploader is sending files the replica lacks (not idle, not backing off).
    uploading: AtomicBool,
}

impl ReplicaProgress {
    /// Highest TXID durably stored on the replica, `None` when unknown or none.
    pub fn replicated(&self) -> Option<TxId> {
        self.replicated.load()
    }

    /// Whether the replica durably holds `t` (a replica holds `None` always).
    pub fn holds(&self, t: Option<TxId>) -> bool {
        self.replicated() >= t
    }

    /// Records the replica's position: from its listing at start, or after an upload.
    pub fn set_replicated(&self, t: Option<TxId>) {
        self.replicated.store(t);
    }

    /// Records how far level 1 reaches: `None` when level 1 is empty. A replica without
    /// compaction levels (`levels` empty) covers everything: call
    /// [`ReplicaProgress::set_no_levels`].
    pub fn set_compacted(&self, l1_max: Option<TxId>) {
        self.compacted.store(l1_max);
    }

    /// The replica compacts nothing: local L0 files need not wait for level 1.
    pub fn set_no_levels(&self) {
        self.compacted.store(Some(TxId::MAX));
    }

    /// Highest TXID the replica's level 1 covers (`TxId::MAX` without levels).
    pub fn compacted(&self) -> Option<TxId> {
        self.compacted.load()
    }

    /// Marks the start of a catch-up: the replica is uploading when it is behind `head`.
    pub fn begin_catch_up(&self, head: Option<TxId>) {
        self.uploading
            .store(self.replicated() < head, Ordering::Release);
    }

    /// Marks the end of a catch-up (caught up, failed, or waiting for a full image).
    pub fn end_catch_up(&self) {
        self.uploading.store(false, Ordering::Release);
    }

    /// Whether the uploader is sending files the replica lacks.
    pub fn is_uploading(&self) -> bool {
        self.uploading.load(Ordering::Acquire)
    }

    /// Whether the next capture should wait for this replica: it is still uploading and
    /// lacks `head`, so a replica slower than the pace receives fewer, larger files
    /// instead of a queue that grows. A replica backing off after errors holds nothing.
    pub fn holds_capture(&self, head: Option<TxId>) -> bool {
        self.is_uploading() && self.replicated() < head
    }

    /// Up to which TXID local L0 files are no longer needed for this replica: held by it
    /// and compacted into its level 1 (compaction then reads its inputs locally). In
    /// `once` mode, where no compaction may come, holding is enough.
    pub fn prunable(&self, once: bool) -> Option<TxId> {
        let held = self.replicated();
        if once {
            held
        } else {
            held.min(self.compacted())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: u64) -> Option<TxId> {
        Some(TxId::new(v).unwrap())
    }

    #[test]
    fn atomic_txid_maps_zero_to_none() {
        let a = AtomicTxId::default();
        assert_eq!(a.load(), None);
        a.store(t(7));
        assert_eq!(a.load(), t(7));
        a.store(None);
        assert_eq!(a.load(), None);
        assert_eq!(raw(t(7)), 7);
        assert_eq!(raw(None), 0);
    }

    #[test]
    fn floor_is_the_lowest_replica_and_none_when_one_holds_nothing() {
        let (a, b) = (ReplicaProgress::default(), ReplicaProgress::default());
        let db = DbProgress::default();
        a.set_replicated(t(5));
        assert_eq!(db.update_floor([&a, &b]), None);
        b.set_replicated(t(3));
        assert_eq!(db.update_floor([&a, &b]), t(3));
        assert_eq!(db.replicated_floor(), t(3));
        assert_eq!(db.update_floor([]), None);
    }

    #[test]
    fn capture_waits_only_for_a_replica_uploading_and_behind() {
        let r = ReplicaProgress::default();
        r.set_replicated(t(2));
        r.begin_catch_up(t(4));
        assert!(r.holds_capture(t(4)));
        r.set_replicated(t(4));
        assert!(!r.holds_capture(t(4)));
        r.end_catch_up();
        assert!(!r.holds_capture(t(9)));
        // Not behind at the start of the catch-up: not uploading.
        r.begin_catch_up(t(4));
        assert!(!r.is_uploading());
    }

    #[test]
    fn prunable_needs_level_one_unless_once_or_no_levels() {
        let r = ReplicaProgress::default();
        r.set_replicated(t(9));
        assert_eq!(r.prunable(false), None);
        assert_eq!(r.prunable(true), t(9));
        r.set_compacted(t(6));
        assert_eq!(r.prunable(false), t(6));
        r.set_no_levels();
        assert_eq!(r.prunable(false), t(9));
        assert!(r.holds(t(9)) && r.holds(None) && !r.holds(t(10)));
    }
}
