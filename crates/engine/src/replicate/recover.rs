//! `auto-recover`: when a replica's history can no longer be trusted, restart it from a
//! new snapshot instead of failing forever.
//!
//! Untrusted means (Litestream resets its local state on a missing or corrupt local LTX
//! file; we look at the replica, which is what restores read):
//! - at start, the replica's listing cannot be restored (a TXID gap, no file starting at
//!   TXID 1): [`check_at_start`], free (the listing is taken anyway);
//! - at start, the replica's newest L0 file differs from our local copy of the same TXID
//!   (another history wrote it, or it was overwritten): one GET, only when we still hold
//!   that TXID locally;
//! - while running, maintenance finds a file the replica should hold missing (deleted
//!   under us), a file that does not decode, or a history it cannot plan a snapshot
//!   from: [`untrusted`].
//!
//! Recovery ([`Reset`]): the replica is listed again (so retention and compaction see
//! what it really holds), the capture loop is asked for a full image, and that image is
//! uploaded as a snapshot `1..=T` above everything the replica held; uploads go on from
//! `T + 1`. Restores take the newest snapshot, so nothing before it is read again. The
//! old files stay until snapshot retention removes them. Costs: ten LISTs and one PUT of
//! the database's size per recovery.
//!
//! Owns: the detection rules and the reset state; `upload.rs` acts on them.

use ltx::{Level, TxId};

use super::local::LocalDir;
use super::maintain::{MaintainError, ReplicaView};
use crate::history::plan::{plan, Listing, Target};
use crate::storage::ReplicaStore;

/// A replica restarting its history: the next upload must be a snapshot of a full image
/// newer than `above`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    /// The newest local TXID when the reset was decided.
    pub above: Option<ltx::TxId>,
    /// Why, for the log.
    pub reason: String,
}

/// Why the replica's history (as listed in `view`) cannot be trusted at start, if so.
pub async fn check_at_start(
    store: &dyn ReplicaStore,
    local: &LocalDir,
    view: &ReplicaView,
) -> Option<String> {
    let all = view.all();
    if all.is_empty() {
        return None; // a fresh replica gets its snapshot anyway
    }
    if let Err(e) = plan(&Listing::new(all), Target::Latest) {
        return Some(format!("its history cannot be restored: {e}"));
    }
    let newest = view.files(Level::L0).last()?;
    let txid = newest.key.max;
    if newest.key.min != txid || !local.has(txid) {
        return None;
    }
    let Ok(mine) = local.read(txid) else {
        return None;
    };
    match store.get(&newest.key, None).await {
        Ok(theirs) if theirs != mine => Some(format!(
            "its newest L0 file {} differs from the local copy of TXID {} ({} bytes there, {} here): another history wrote it",
            newest.key,
            hex(txid),
            theirs.len(),
            mine.len()
        )),
        Ok(_) => None,
        Err(e) if e.is_not_found() => Some(format!(
            "its newest L0 file {} is listed but cannot be read: {e}",
            newest.key
        )),
        // A transient error says nothing about the history.
        Err(_) => None,
    }
}

/// Why a maintenance error means the replica's history cannot be trusted, if it does.
pub fn untrusted(e: &MaintainError) -> Option<String> {
    match e {
        MaintainError::Storage(s) if s.is_not_found() => {
            Some(format!("a file it should hold is gone: {s}"))
        }
        MaintainError::Compact { .. } => Some(format!("a file it holds is unusable: {e}")),
        MaintainError::Plan(_) => Some(format!("its history cannot be planned: {e}")),
        _ => None,
    }
}

fn hex(t: TxId) -> String {
    format!("{:016x}", t.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;

    #[test]
    fn which_maintenance_errors_mean_untrusted() {
        let gone = MaintainError::Storage(StorageError::not_found("/r", "ltx/1/x.ltx"));
        assert!(untrusted(&gone).is_some());
        let flaky = MaintainError::Storage(StorageError::transient("/r", "get", "timeout"));
        assert!(untrusted(&flaky).is_none());
        assert!(untrusted(&MaintainError::Plan("gap".into())).is_some());
    }
}
