//! The restore planner: a listing goes in, a plan or a precise error comes out. No I/O.
//!
//! Owns: choosing the files that rebuild a database at a target (the latest TXID, a TXID,
//! or a point in time), and explaining why it cannot when history has a gap.
//!
//! The rule (Litestream 0.5's, so both tools pick the same files): take the newest
//! snapshot (level 9) at or below the target, then repeatedly take, across levels 0..=8,
//! the file that continues the history (`min <= cur + 1 < max + 1`) and reaches furthest
//! without passing the target; ties go to the smaller min, then the higher level. This is
//! the fewest files that reach the target. With a timestamp target only files created
//! strictly before it count. The first file must start at TXID 1 (a full database).
//!
//! Fed by listings (`history::list_all`); feeds `restore::apply` (and
//! `replicate::maintain`, which builds snapshots from the same plan).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use ltx::{Level, TxId};

use crate::storage::layout::{LtxInfo, LtxKey};

/// What to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The newest TXID the replica holds.
    Latest,
    /// Exactly this TXID (inclusive).
    TxId(TxId),
    /// The newest state whose files were all created strictly before this time.
    Timestamp(SystemTime),
}

/// A replica's files, grouped by level, each level sorted by (min, max).
#[derive(Clone, Debug, Default)]
pub struct Listing {
    levels: BTreeMap<u8, Vec<LtxInfo>>,
}

impl Listing {
    pub fn new(files: Vec<LtxInfo>) -> Listing {
        let mut levels: BTreeMap<u8, Vec<LtxInfo>> = BTreeMap::new();
        for f in files {
            levels.entry(f.key.level.get()).or_default().push(f);
        }
        for v in levels.values_mut() {
            v.sort_by_key(|f| (f.key.min, f.key.max));
            v.dedup_by_key(|f| f.key);
        }
        Listing { levels }
    }

    pub fn level(&self, level: Level) -> &[LtxInfo] {
        self.levels
            .get(&level.get())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.levels.values().all(Vec::is_empty)
    }

    pub fn files(&self) -> impl Iterator<Item = &LtxInfo> {
        self.levels.values().flatten()
    }
}

/// The newest TXID any file of the listing reaches.
pub fn latest_txid(listing: &Listing) -> Option<TxId> {
    listing.files().map(|f| f.key.max).max()
}

/// The files to apply, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub files: Vec<LtxInfo>,
    pub target_txid: TxId,
}

impl Plan {
    /// Listed bytes of every file; saturates rather than overflow on a lying listing.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.size_bytes))
    }

    /// The plan as JSON, for `restore -dry-run -json`.
    pub fn to_json(&self) -> serde_json::Value {
        let files: Vec<_> = self
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "level": f.key.level.get(),
                    "min_txid": f.key.min.to_string(),
                    "max_txid": f.key.max.to_string(),
                    "size": f.size_bytes,
                    "created": jiff::Timestamp::try_from(f.created).map(|t| t.to_string()).unwrap_or_default(),
                })
            })
            .collect();
        serde_json::json!({ "txid": self.target_txid.to_string(), "files": files, "bytes": self.total_bytes() })
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "restore to TXID {} from {} file(s), {} bytes:",
            self.target_txid,
            self.files.len(),
            self.total_bytes()
        )?;
        writeln!(
            f,
            "{:<6} {:<17} {:<17} {:>12}",
            "level", "min_txid", "max_txid", "size"
        )?;
        for i in &self.files {
            writeln!(
                f,
                "{:<6} {:<17} {:<17} {:>12}",
                i.key.level, i.key.min, i.key.max, i.size_bytes
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the replica holds no LTX files")]
    Empty,
    #[error("no file matches the target: {detail}")]
    NothingBefore { detail: String },
    #[error("TXID {target} is not available: the replica's newest TXID is {newest}")]
    TargetBeyondHead { target: TxId, newest: TxId },
    #[error("history does not start with a full database: the oldest usable file is {first} (a restore needs a snapshot or a file starting at TXID 1)")]
    NoStart { first: LtxKey },
    #[error("TXID {target} is older than the oldest snapshot kept ({oldest_snapshot}): retention has removed what a restore to it needs")]
    BeforeRetention {
        target: TxId,
        oldest_snapshot: LtxKey,
    },
    #[error("history has a gap: TXIDs {missing_from}..={missing_to} are missing between {before} and {after}")]
    Gap {
        missing_from: TxId,
        missing_to: TxId,
        before: String,
        after: String,
    },
}

/// Computes the plan for `target`.
pub fn plan(listing: &Listing, target: Target) -> Result<Plan, PlanError> {
    let newest = latest_txid(listing).ok_or(PlanError::Empty)?;
    let before = |f: &LtxInfo| match target {
        Target::Timestamp(t) => f.created < t,
        _ => true,
    };
    let limit = match target {
        Target::Latest => newest,
        Target::TxId(t) if t > newest => {
            return Err(PlanError::TargetBeyondHead { target: t, newest })
        }
        Target::TxId(t) => t,
        Target::Timestamp(_) => listing
            .files()
            .filter(|f| before(f))
            .map(|f| f.key.max)
            .max()
            .ok_or_else(|| {
                let oldest = listing.files().map(|f| f.created).min();
                PlanError::NothingBefore {
                    detail: format!(
                        "every file was created at or after the timestamp (oldest: {})",
                        oldest
                            .and_then(|t| jiff::Timestamp::try_from(t).ok())
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ),
                }
            })?,
    };
    let mut files = Vec::new();
    let snapshot = listing
        .level(Level::SNAPSHOT)
        .iter()
        .filter(|f| f.key.max <= limit && before(f))
        .max_by_key(|f| f.key.max);
    // The newest TXID the chosen files reach; `None` before the first.
    let mut cur: Option<TxId> = None;
    if let Some(s) = snapshot {
        cur = Some(s.key.max);
        files.push(s.clone());
    }
    while cur < Some(limit) {
        let next = Level::all()
            .rev()
            .filter(|l| !l.is_snapshot())
            .flat_map(|l| listing.level(l))
            .filter(|f| continues(&f.key, cur) && f.key.max <= limit && before(f))
            // Furthest reach, then the smaller min, then the higher level.
            .max_by_key(|f| (f.key.max, std::cmp::Reverse(f.key.min), f.key.level));
        match next {
            Some(f) => {
                cur = Some(f.key.max);
                files.push(f.clone());
            }
            None => return Err(gap(listing, cur, limit, files.last(), &before)),
        }
    }
    Ok(Plan {
        files,
        target_txid: limit,
    })
}

/// Whether a file with `key` continues a history that reaches `cur` (`None`: nothing yet,
/// so the file must start at TXID 1): it starts at most one past `cur` and goes beyond it.
pub fn continues(key: &LtxKey, cur: Option<TxId>) -> bool {
    match cur {
        None => key.min == TxId::ONE,
        Some(c) => key.min.get() <= c.get().saturating_add(1) && key.max > c,
    }
}

/// Whether a file with `key` starts past the TXID after `cur`: a gap lies before it.
fn starts_past_next(key: &LtxKey, cur: Option<TxId>) -> bool {
    match cur {
        None => key.min > TxId::ONE,
        Some(c) => key.min.get() > c.get().saturating_add(1),
    }
}

/// Describes why the history stops at `cur` (`None`: no file starts it): the missing range
/// and the files on each side. `cur` is below `limit`.
fn gap(
    listing: &Listing,
    cur: Option<TxId>,
    limit: TxId,
    last: Option<&LtxInfo>,
    before: &dyn Fn(&LtxInfo) -> bool,
) -> PlanError {
    let after = listing
        .files()
        .filter(|f| starts_past_next(&f.key, cur) && f.key.min <= limit && before(f))
        .min_by_key(|f| (f.key.min, std::cmp::Reverse(f.key.max)));
    if cur.is_none() {
        if let Some(s) = listing
            .level(Level::SNAPSHOT)
            .iter()
            .filter(|s| before(s))
            .min_by_key(|s| s.key.max)
        {
            return PlanError::BeforeRetention {
                target: limit,
                oldest_snapshot: s.key,
            };
        }
        if let Some(a) = listing
            .files()
            .filter(|f| before(f) && f.key.max <= limit)
            .min_by_key(|f| f.key.min)
        {
            return PlanError::NoStart { first: a.key };
        }
    }
    // `cur < limit`, so the TXID after it exists; `after` starts past that TXID, so the
    // one before `after` exists too.
    let missing_from = cur.map_or(TxId::ONE, |c| c.next().unwrap_or(limit));
    let missing_to = after
        .and_then(|a| TxId::new(a.key.min.get() - 1).ok())
        .unwrap_or(limit);
    PlanError::Gap {
        missing_from,
        missing_to,
        before: last
            .map(|f| f.key.to_string())
            .unwrap_or_else(|| "the start".into()),
        after: after
            .map(|f| f.key.to_string())
            .unwrap_or_else(|| "the target".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t(v: u64) -> TxId {
        TxId::new(v).unwrap()
    }

    /// A file at `level` covering min..=max, created at second `created`.
    fn f(level: u8, min: u64, max: u64, created: u64) -> LtxInfo {
        LtxInfo {
            key: LtxKey::new(Level::new(level).unwrap(), t(min), t(max)),
            size_bytes: 100 * (max - min + 1),
            created: UNIX_EPOCH + Duration::from_secs(created),
        }
    }

    fn keys(p: &Plan) -> Vec<(u8, u64, u64)> {
        p.files
            .iter()
            .map(|f| (f.key.level.get(), f.key.min.get(), f.key.max.get()))
            .collect()
    }

    /// A typical replica: snapshots at 1-5 and 1-9, L1 1-6 and 7-9, L0 5..=12.
    fn typical() -> Listing {
        let mut v = vec![
            f(9, 1, 5, 50),
            f(9, 1, 9, 90),
            f(1, 1, 6, 60),
            f(1, 7, 9, 90),
        ];
        v.extend((5..=12).map(|i| f(0, i, i, i * 10)));
        Listing::new(v)
    }

    /// (name, listing, target, the plan's (level, min, max) files or the error variant).
    type Case = (
        &'static str,
        Listing,
        Target,
        Result<Vec<(u8, u64, u64)>, &'static str>,
    );

    #[test]
    fn table() {
        let cases: Vec<Case> = vec![
            (
                "latest uses newest snapshot then L0",
                typical(),
                Target::Latest,
                Ok(vec![(9, 1, 9), (0, 10, 10), (0, 11, 11), (0, 12, 12)]),
            ),
            (
                "txid below newest snapshot",
                typical(),
                Target::TxId(t(8)),
                Ok(vec![(9, 1, 5), (1, 1, 6), (0, 7, 7), (0, 8, 8)]),
            ),
            (
                "txid equal to a snapshot",
                typical(),
                Target::TxId(t(9)),
                Ok(vec![(9, 1, 9)]),
            ),
            (
                "timestamp picks files created before it",
                typical(),
                Target::Timestamp(UNIX_EPOCH + Duration::from_secs(75)),
                Ok(vec![(9, 1, 5), (1, 1, 6), (0, 7, 7)]),
            ),
            (
                "no snapshot: L0 from 1",
                Listing::new((1..=3).map(|i| f(0, i, i, i)).collect()),
                Target::Latest,
                Ok(vec![(0, 1, 1), (0, 2, 2), (0, 3, 3)]),
            ),
            (
                "greedy prefers the longest reach across levels",
                Listing::new(vec![
                    f(0, 1, 1, 1),
                    f(0, 2, 2, 2),
                    f(1, 1, 2, 3),
                    f(2, 1, 2, 4),
                    f(0, 3, 3, 5),
                ]),
                Target::Latest,
                Ok(vec![(2, 1, 2), (0, 3, 3)]),
            ),
            (
                "beyond head",
                typical(),
                Target::TxId(t(13)),
                Err("TargetBeyondHead"),
            ),
            ("empty", Listing::new(vec![]), Target::Latest, Err("Empty")),
            (
                "timestamp before everything",
                typical(),
                Target::Timestamp(UNIX_EPOCH),
                Err("NothingBefore"),
            ),
            (
                "gap",
                Listing::new(vec![f(0, 1, 1, 1), f(0, 2, 2, 2), f(0, 5, 5, 5)]),
                Target::Latest,
                Err("Gap"),
            ),
            (
                "no start",
                Listing::new(vec![f(0, 4, 4, 1), f(0, 5, 5, 2)]),
                Target::Latest,
                Err("NoStart"),
            ),
        ];
        for (name, listing, target, want) in cases {
            let got = plan(&listing, target);
            match (want, got) {
                (Ok(w), Ok(p)) => assert_eq!(keys(&p), w, "{name}"),
                (Err(w), Err(e)) => assert!(format!("{e:?}").starts_with(w), "{name}: got {e:?}"),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn gap_error_names_range_and_neighbours() {
        let l = Listing::new(vec![
            f(0, 1, 1, 1),
            f(0, 2, 2, 2),
            f(0, 5, 5, 5),
            f(0, 6, 6, 6),
        ]);
        let e = plan(&l, Target::Latest).unwrap_err();
        assert_eq!(
            e,
            PlanError::Gap {
                missing_from: t(3),
                missing_to: t(4),
                before: "L0/0000000000000002-0000000000000002.ltx".into(),
                after: "L0/0000000000000005-0000000000000005.ltx".into(),
            }
        );
        assert!(
            e.to_string()
                .contains("0000000000000003..=0000000000000004"),
            "{e}"
        );
        // A target before the gap still restores.
        assert_eq!(
            keys(&plan(&l, Target::TxId(t(2))).unwrap()),
            vec![(0, 1, 1), (0, 2, 2)]
        );
    }

    #[test]
    fn snapshot_bridges_a_gap_in_lower_levels() {
        // After retention, L0 starts at 8 and only the snapshot covers 1..=7.
        let l = Listing::new(vec![f(9, 1, 7, 70), f(0, 8, 8, 80), f(0, 9, 9, 90)]);
        assert_eq!(
            keys(&plan(&l, Target::Latest).unwrap()),
            vec![(9, 1, 7), (0, 8, 8), (0, 9, 9)]
        );
        // Retention removed what a restore to TXID 5 would need: the error says so.
        let e = plan(&l, Target::TxId(t(5))).unwrap_err();
        assert!(
            matches!(e, PlanError::BeforeRetention { target, .. } if target == t(5)),
            "{e:?}"
        );
    }

    #[test]
    fn plan_json_and_text() {
        let p = plan(&typical(), Target::Latest).unwrap();
        let j = p.to_json();
        assert_eq!(j["txid"], "000000000000000c");
        assert_eq!(j["files"].as_array().unwrap().len(), 4);
        assert_eq!(j["bytes"].as_u64().unwrap(), p.total_bytes());
        let text = p.to_string();
        assert!(
            text.contains("restore to TXID 000000000000000c from 4 file(s)"),
            "{text}"
        );
    }
}
