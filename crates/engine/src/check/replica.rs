//! Checks of one replica: can we list, write, read back (whole and a byte range), create
//! conditionally, and delete; how far is the storage's clock from ours; what does it hold.
//!
//! The round trip uses one scratch object, `layout::check_scratch_name` at the replica
//! root: outside every level directory and not an LTX name, so no listing, restore or
//! retention pass running at the same time can see it; it is deleted before returning,
//! whatever failed (and a failed delete is reported with the object's name).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ltx::Level;

use super::{skew_level, Finding, Level as Sev, Thresholds};
use crate::history::{list_levels, Times};
use crate::storage::layout::check_scratch_name;
use crate::storage::{ErrorKind, NamedStore, ReplicaStore, StorageError};

/// Size of the scratch object: small, but more than one read's worth of range.
const SCRATCH_BYTES: usize = 4096;
/// Timestamps some storage reports only to the second (HTTP `Last-Modified`).
const TIMESTAMP_GRANULARITY: Duration = Duration::from_secs(1);

/// Every finding about one replica.
pub async fn check(store: &dyn ReplicaStore, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    match contents(store).await {
        Ok(f) => out.push(f),
        Err(e) => {
            // Nothing else will work either; one precise failure says it.
            out.push(storage_failure("replica-list", "listing the replica", &e));
            return out;
        }
    }
    let name = check_scratch_name(rand::random());
    let store = match store.named() {
        Ok(s) => s,
        Err(e) => {
            let step = format!("writing the scratch object {name}");
            out.push(storage_failure("replica-round-trip", &step, &e));
            return out;
        }
    };
    let result = round_trip(store, &name, t).await;
    let cleanup = store.delete_name(&name).await;
    match result {
        Ok(findings) => out.extend(findings),
        Err(f) => out.push(f),
    }
    if let Err(e) = cleanup {
        out.push(storage_failure(
            "replica-round-trip",
            &format!("deleting the scratch object {name}"),
            &e,
        ));
    }
    out
}

fn storage_failure(check: &'static str, step: &str, e: &StorageError) -> Finding {
    let action = e
        .hint()
        .unwrap_or("check the replica's settings in the config")
        .to_string();
    Finding::fail(check, format!("{step} failed: {e}"), action)
}

/// What the replica holds: a warning when it holds nothing yet.
async fn contents(store: &dyn ReplicaStore) -> Result<Finding, StorageError> {
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut newest = None;
    for f in list_levels(store, Level::all(), Times::Listed).await? {
        files += 1;
        bytes = bytes.saturating_add(f.size_bytes);
        newest = newest.max(Some(f.key.max));
    }
    Ok(match newest {
        None => Finding::warn(
            "replica-contents",
            "the replica holds no LTX files yet",
            "start `sqlite-replicate replicate` for this database (or check the replica's path or prefix)",
        ),
        Some(t) => Finding::ok(
            "replica-contents",
            format!(
                "{files} LTX file(s), {}, newest TXID {t}",
                super::human_bytes(bytes)
            ),
        ),
    })
}

/// Put, head, ranged and whole get, conditional create, delete, and the clock skew.
async fn round_trip(
    store: &dyn NamedStore,
    name: &str,
    t: &Thresholds,
) -> Result<Vec<Finding>, Finding> {
    let fail = |step: &str, e: StorageError| storage_failure("replica-round-trip", step, &e);
    let payload: Vec<u8> = (0..SCRATCH_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    let payload = Bytes::from(payload);
    let started = Instant::now();
    let before = SystemTime::now();
    store
        .put_name(name, payload.clone())
        .await
        .map_err(|e| fail(&format!("writing the scratch object {name}"), e))?;
    let after = SystemTime::now();
    let head = store
        .head_name(name)
        .await
        .map_err(|e| fail(&format!("reading the metadata of {name}"), e))?;
    if head.size_bytes != payload.len() as u64 {
        return Err(Finding::fail(
            "replica-round-trip",
            format!(
                "the scratch object {name} reads back as {} bytes, {} were written",
                head.size_bytes,
                payload.len()
            ),
            "the storage does not store objects faithfully: check its configuration",
        ));
    }
    let range = 1000u64..3000u64;
    let part = store
        .get_name(name, Some(range.clone()))
        .await
        .map_err(|e| fail(&format!("reading bytes {range:?} of {name}"), e))?;
    let whole = store
        .get_name(name, None)
        .await
        .map_err(|e| fail(&format!("reading {name}"), e))?;
    if part[..] != payload[range.start as usize..range.end as usize] || whole != payload {
        return Err(Finding::fail(
            "replica-round-trip",
            format!("the scratch object {name} reads back different from what was written"),
            "the storage (or a proxy in front of it) alters data: check its configuration",
        ));
    }
    let conditional = match store.create_name(name, Bytes::from_static(b"x")).await {
        Err(e) if matches!(e.kind(), ErrorKind::Precondition) => Finding::ok(
            "replica-conditional-create",
            "conditional create refuses to replace an existing object",
        ),
        Err(e) if e.kind() == ErrorKind::Permanent => Finding::ok(
            "replica-conditional-create",
            format!("conditional create is not available: {}", e.detail()),
        )
        .with_action("nothing to do: replication does not rely on it"),
        Err(e) => return Err(fail("creating an existing object conditionally", e)),
        Ok(_) => Finding::warn(
            "replica-conditional-create",
            "a conditional create replaced an existing object: the storage ignores If-None-Match",
            "nothing to do for replication today; do not rely on leases on this storage",
        ),
    };
    store
        .delete_name(name)
        .await
        .map_err(|e| fail(&format!("deleting the scratch object {name}"), e))?;
    match store.head_name(name).await {
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(fail(&format!("checking that {name} is gone"), e)),
        Ok(_) => {
            return Err(Finding::fail(
                "replica-round-trip",
                format!("the scratch object {name} is still there after a delete"),
                "check the storage's delete permission and any object-lock or versioning settings",
            ))
        }
    }
    let elapsed = started.elapsed();
    let mut out = vec![Finding::ok(
        "replica-round-trip",
        format!(
            "list, write, read back (whole and a range), delete of a scratch object: ok in {} ms",
            elapsed.as_millis()
        ),
    )];
    out.push(conditional);
    out.push(skew(before, after, head.modified, t));
    Ok(out)
}

/// Compares the storage's modification time with our clock while the write was in flight.
fn skew(before: SystemTime, after: SystemTime, modified: SystemTime, t: &Thresholds) -> Finding {
    let flight = after.duration_since(before).unwrap_or_default();
    let middle = before + flight / 2;
    let (offset, direction) = match modified.duration_since(middle) {
        Ok(d) => (d, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    let uncertainty = flight / 2 + TIMESTAMP_GRANULARITY;
    let msg = format!(
        "the storage's clock is {:.1} s {direction} ours (± {:.1} s)",
        offset.as_secs_f64(),
        uncertainty.as_secs_f64()
    );
    let action =
        "synchronise the clocks (NTP) of this machine and the storage: point-in-time restores \
                  and retention compare our clock with times the storage records";
    match skew_level(offset, uncertainty, t) {
        Sev::Ok => Finding::ok("clock-skew", msg),
        Sev::Warn => Finding::warn(
            "clock-skew",
            format!(
                "{msg}: above the warning threshold of {} s",
                t.skew_warn.as_secs()
            ),
            action,
        ),
        Sev::Fail => Finding::fail(
            "clock-skew",
            format!(
                "{msg}: above the failure threshold of {} s",
                t.skew_fail.as_secs()
            ),
            action,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;

    #[tokio::test]
    async fn a_good_file_replica_passes_and_is_left_clean() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStore::new(d.path().join("replica"));
        let f = check(&s, &Thresholds::default()).await;
        let by = |c: &str| f.iter().find(|x| x.check == c).unwrap().level;
        assert_eq!(by("replica-contents"), Sev::Warn, "{f:?}");
        assert_eq!(by("replica-round-trip"), Sev::Ok, "{f:?}");
        assert_eq!(by("replica-conditional-create"), Sev::Ok, "{f:?}");
        assert_eq!(by("clock-skew"), Sev::Ok, "{f:?}");
        let left: Vec<_> = std::fs::read_dir(d.path().join("replica"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "scratch objects left behind: {left:?}");
    }

    #[test]
    fn skew_direction_and_levels() {
        let t = Thresholds::default();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = skew(at, at, at + Duration::from_secs(40), &t);
        assert_eq!(f.level, Sev::Fail);
        assert!(f.message.contains("40.0 s ahead of ours"), "{}", f.message);
        let f = skew(at, at, at - Duration::from_secs(10), &t);
        assert_eq!(f.level, Sev::Warn);
        assert!(f.message.contains("behind"), "{}", f.message);
        assert_eq!(skew(at, at, at, &t).level, Sev::Ok);
    }
}
