//! Validated newtypes for the numbers the LTX format carries.
//!
//! Owns: `TxId`, `PageNo`, `PageSize`, `Level`, and the rules that belong to them
//! (the lock page, the 16-hex TXID spelling). Every other module takes these types
//! instead of raw integers, so an out-of-range value is rejected once, at the edge.

use std::fmt;
use std::str::FromStr;

use crate::error::TypeError;

/// A replication transaction ID: one monotonic counter per database, starting at 1.
///
/// It is not SQLite's transaction count: one TXID may cover several SQLite commits
/// captured together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(u64);

impl TxId {
    /// The first TXID of every history.
    pub const ONE: TxId = TxId(1);
    /// The largest TXID the format can carry.
    pub const MAX: TxId = TxId(u64::MAX);

    /// Returns a TXID, rejecting 0 (which the format reserves for "none").
    pub fn new(v: u64) -> Result<TxId, TypeError> {
        if v == 0 {
            return Err(TypeError::ZeroTxId);
        }
        Ok(TxId(v))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The next TXID, or an error at the end of the counter.
    pub fn next(self) -> Result<TxId, TypeError> {
        self.0
            .checked_add(1)
            .map(TxId)
            .ok_or(TypeError::TxIdOverflow)
    }

    /// Parses Litestream's CLI spelling: exactly 16 hex digits (case-insensitive).
    pub fn parse_hex16(s: &str) -> Result<TxId, TypeError> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TypeError::BadTxIdSpelling(s.to_string()));
        }
        let v =
            u64::from_str_radix(s, 16).map_err(|_| TypeError::BadTxIdSpelling(s.to_string()))?;
        TxId::new(v)
    }
}

impl fmt::Display for TxId {
    /// Always the 16-digit lowercase hex spelling used in file names and the CLI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for TxId {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<TxId, TypeError> {
        TxId::parse_hex16(s)
    }
}

/// A database page size: a power of two from 512 to 65536 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageSize(u32);

impl PageSize {
    pub const MIN: u32 = 512;
    pub const MAX: u32 = 65536;

    pub fn new(v: u32) -> Result<PageSize, TypeError> {
        if !(Self::MIN..=Self::MAX).contains(&v) || !v.is_power_of_two() {
            return Err(TypeError::BadPageSize(v));
        }
        Ok(PageSize(v))
    }

    /// SQLite's on-disk spelling (database header offset 16, WAL header offset 8):
    /// a 16-bit value where 1 means 65536.
    pub fn from_sqlite_header(v: u32) -> Result<PageSize, TypeError> {
        if v == 1 {
            return PageSize::new(65536);
        }
        PageSize::new(v)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn bytes(self) -> usize {
        self.0 as usize
    }

    /// The page holding SQLite's lock bytes (offset 1 GiB). It is never stored in LTX
    /// and is all zeros in a restored database.
    pub fn lock_page(self) -> PageNo {
        PageNo(0x4000_0000 / self.0 + 1)
    }

    /// How many pages `1..=commit` a full snapshot stores: all of them except the
    /// lock page when the database reaches it.
    pub fn snapshot_page_count(self, commit: u32) -> u32 {
        commit - u32::from(self.lock_page().get() <= commit)
    }

    /// Byte offset of a page in the database file.
    pub fn offset_of(self, pgno: PageNo) -> u64 {
        (pgno.0 as u64 - 1) * self.0 as u64
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 1-based database page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageNo(u32);

impl PageNo {
    pub const ONE: PageNo = PageNo(1);

    pub fn new(v: u32) -> Result<PageNo, TypeError> {
        if v == 0 {
            return Err(TypeError::ZeroPageNo);
        }
        Ok(PageNo(v))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// True when this is the lock page for databases of this page size.
    pub fn is_lock_page(self, page_size: PageSize) -> bool {
        self == page_size.lock_page()
    }
}

impl fmt::Display for PageNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A replica level: 0 holds one file per sync, 1..=8 compactions, 9 snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(u8);

impl Level {
    pub const L0: Level = Level(0);
    /// The first compaction level (L0 files merged on its interval).
    pub const L1: Level = Level(1);
    pub const SNAPSHOT: Level = Level(9);
    pub const MAX: u8 = 9;

    pub fn new(v: u8) -> Result<Level, TypeError> {
        if v > Self::MAX {
            return Err(TypeError::BadLevel(v));
        }
        Ok(Level(v))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    pub fn is_snapshot(self) -> bool {
        self.0 == 9
    }

    /// All levels from 0 to 9.
    pub fn all() -> impl DoubleEndedIterator<Item = Level> {
        (0..=Self::MAX).map(Level)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_rules() {
        for (v, ok) in [
            (0, false),
            (256, false),
            (512, true),
            (1000, false),
            (4096, true),
            (65536, true),
            (131072, false),
        ] {
            assert_eq!(PageSize::new(v).is_ok(), ok, "page size {v}");
        }
        assert_eq!(PageSize::from_sqlite_header(1).unwrap().get(), 65536);
    }

    #[test]
    fn lock_page_per_size() {
        for (size, lock) in [
            (512u32, 2_097_153u32),
            (1024, 1_048_577),
            (4096, 262_145),
            (65536, 16_385),
        ] {
            assert_eq!(
                PageSize::new(size).unwrap().lock_page().get(),
                lock,
                "page size {size}"
            );
        }
    }

    #[test]
    fn snapshot_page_count_skips_lock_page() {
        let ps = PageSize::new(65536).unwrap();
        for (commit, count) in [
            (0, 0),
            (1, 1),
            (16_384, 16_384),
            (16_385, 16_384),
            (16_386, 16_385),
        ] {
            assert_eq!(ps.snapshot_page_count(commit), count, "commit {commit}");
        }
        assert_eq!(
            PageSize::new(512).unwrap().snapshot_page_count(u32::MAX),
            u32::MAX - 1
        );
    }

    #[test]
    fn txid_spelling() {
        let t = TxId::new(0x1a2b).unwrap();
        assert_eq!(t.to_string(), "0000000000001a2b");
        assert_eq!(TxId::parse_hex16("0000000000001A2B").unwrap(), t);
        for bad in [
            "",
            "1a2b",
            "00000000000000000",
            "000000000000001g",
            "0000000000000000",
        ] {
            assert!(
                TxId::parse_hex16(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(TxId::MAX.next().is_err());
    }

    #[test]
    fn level_bounds() {
        assert!(Level::new(9).is_ok());
        assert!(Level::new(10).is_err());
        assert_eq!(Level::all().count(), 10);
    }
}
