//! A replica's LTX history as restores and compaction see it: the one function that lists
//! every level of a replica ([`list_all`]), and the pure planner ([`plan`]) that turns such
//! a listing into the files rebuilding a database at a target.
//!
//! Shared by `restore` (every restore, follow and drill) and `replicate::maintain` (which
//! builds snapshots from the same plan), so neither imports the other. Does not fetch file
//! contents (that is `restore::apply`) nor spell keys (that is `storage::layout`).

pub mod plan;

use ltx::Level;

use crate::storage::layout::LtxInfo;
use crate::storage::{ReplicaStore, StorageError};
use plan::Listing;

/// Which creation times a listing carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// As the store lists them (an object's upload time on object stores): one LIST
    /// request per level.
    Listed,
    /// As the writer recorded them in each file's header, for point-in-time restores:
    /// object stores need a HEAD (or ranged GET) per file for that.
    Exact,
}

/// Lists `levels` of `store`, in that order (the listings run concurrently: a replica
/// on an object store answers ten LISTs in the time of about one).
pub async fn list_levels(
    store: &dyn ReplicaStore,
    levels: impl IntoIterator<Item = Level>,
    times: Times,
) -> Result<Vec<LtxInfo>, StorageError> {
    let lists = levels.into_iter().map(|level| async move {
        match times {
            Times::Listed => store.list(level).await,
            Times::Exact => store.list_exact_times(level).await,
        }
    });
    Ok(futures::future::try_join_all(lists)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Lists every level of `store` (levels 0 to 9, one listing each).
pub async fn list_all(store: &dyn ReplicaStore, times: Times) -> Result<Listing, StorageError> {
    Ok(Listing::new(list_levels(store, Level::all(), times).await?))
}
