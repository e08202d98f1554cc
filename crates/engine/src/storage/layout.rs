//! The one place that spells replica object keys and file paths.
//!
//! Owns: the `%016x-%016x.ltx` name, Litestream's two layouts
//! (`<root>/ltx/<level decimal>/` for file/sftp/abs/gcs and `<prefix>/<level %04x>/` for S3),
//! and parsing names back. Nothing else in the project formats or parses a key.

use std::fmt;
use std::time::SystemTime;

use ltx::{Level, TxId};

/// Identifies one LTX file in a replica: its level and TXID range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LtxKey {
    pub level: Level,
    pub min: TxId,
    pub max: TxId,
}

impl LtxKey {
    pub fn new(level: Level, min: TxId, max: TxId) -> LtxKey {
        debug_assert!(min <= max);
        LtxKey { level, min, max }
    }

    /// The file name, `%016x-%016x.ltx`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.ltx", self.min, self.max)
    }

    /// Parses a file name; `None` for anything that is not exactly a valid LTX name
    /// (other files in a replica directory are ignored, as Litestream does).
    pub fn parse_file_name(level: Level, name: &str) -> Option<LtxKey> {
        let stem = name.strip_suffix(".ltx")?;
        let (a, b) = stem.split_once('-')?;
        if !is_lower_hex16(a) || !is_lower_hex16(b) {
            return None;
        }
        let min = TxId::parse_hex16(a).ok()?;
        let max = TxId::parse_hex16(b).ok()?;
        if min > max {
            return None;
        }
        Some(LtxKey { level, min, max })
    }
}

impl fmt::Display for LtxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}/{}", self.level, self.file_name())
    }
}

fn is_lower_hex16(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One LTX file as a listing reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LtxInfo {
    pub key: LtxKey,
    pub size_bytes: u64,
    /// The file's creation time as the replica records it: the header timestamp copied
    /// into the file mtime or the `litestream-timestamp` metadata. Point-in-time restore
    /// compares against this.
    pub created: SystemTime,
}

/// How a backend arranges levels under its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `<root>/ltx/<level decimal>/<name>`: file, sftp, webdav, gcs, abs.
    LtxDir,
    /// `<prefix>/<level as %04x>/<name>`: s3, oss.
    HexLevel,
}

impl Layout {
    /// The directory (or key prefix) of a level, relative to the replica root, no
    /// trailing slash.
    pub fn level_dir(self, level: Level) -> String {
        match self {
            Layout::LtxDir => format!("ltx/{}", level.get()),
            Layout::HexLevel => format!("{:04x}", level.get()),
        }
    }

    /// The path of a file relative to the replica root.
    pub fn key_path(self, key: &LtxKey) -> String {
        format!("{}/{}", self.level_dir(key.level), key.file_name())
    }
}

/// Litestream 0.3's layout, read-only: `generations/<16hex>/snapshots/<%08x>.snapshot.lz4`
/// and `generations/<16hex>/wal/<%08x>_<%08x>.wal.lz4`.
pub mod v3 {
    pub const GENERATIONS_DIR: &str = "generations";

    pub fn snapshots_dir(generation: &str) -> String {
        format!("{GENERATIONS_DIR}/{generation}/snapshots")
    }

    pub fn wal_dir(generation: &str) -> String {
        format!("{GENERATIONS_DIR}/{generation}/wal")
    }

    /// Parses `<%08x>.snapshot.lz4` into the WAL index it was taken at.
    pub fn parse_snapshot_name(name: &str) -> Option<u32> {
        let idx = name.strip_suffix(".snapshot.lz4")?;
        parse_hex8(idx)
    }

    /// Parses `<%08x>_<%08x>.wal.lz4` into (WAL index, byte offset).
    pub fn parse_wal_segment_name(name: &str) -> Option<(u32, u32)> {
        let stem = name.strip_suffix(".wal.lz4")?;
        let (i, o) = stem.split_once('_')?;
        Some((parse_hex8(i)?, parse_hex8(o)?))
    }

    pub fn is_generation_name(name: &str) -> bool {
        name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit())
    }

    fn parse_hex8(s: &str) -> Option<u32> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: u64) -> TxId {
        TxId::new(v).unwrap()
    }

    #[test]
    fn names_round_trip() {
        let k = LtxKey::new(Level::new(2).unwrap(), t(1), t(0xabc));
        assert_eq!(k.file_name(), "0000000000000001-0000000000000abc.ltx");
        assert_eq!(LtxKey::parse_file_name(k.level, &k.file_name()), Some(k));
    }

    #[test]
    fn bad_names_are_ignored() {
        let l = Level::L0;
        for bad in [
            "0000000000000001-0000000000000abc.ltx.tmp",
            "0000000000000001-0000000000000ABC.ltx",
            "0000000000000002-0000000000000001.ltx",
            "0000000000000000-0000000000000001.ltx",
            "1-2.ltx",
            "../0000000000000001-0000000000000001.ltx",
            "0000000000000001_0000000000000001.ltx",
        ] {
            assert_eq!(LtxKey::parse_file_name(l, bad), None, "{bad}");
        }
    }

    #[test]
    fn layouts() {
        let k = LtxKey::new(Level::SNAPSHOT, t(1), t(6));
        assert_eq!(
            Layout::LtxDir.key_path(&k),
            "ltx/9/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(
            Layout::HexLevel.key_path(&k),
            "0009/0000000000000001-0000000000000006.ltx"
        );
        let k = LtxKey::new(Level::new(3).unwrap(), t(7), t(7));
        assert_eq!(
            Layout::LtxDir.key_path(&k),
            "ltx/3/0000000000000007-0000000000000007.ltx"
        );
    }

    #[test]
    fn v3_names() {
        assert_eq!(v3::parse_snapshot_name("0000000a.snapshot.lz4"), Some(10));
        assert_eq!(
            v3::parse_wal_segment_name("00000001_00001020.wal.lz4"),
            Some((1, 0x1020))
        );
        assert_eq!(v3::parse_wal_segment_name("1_2.wal.lz4"), None);
    }
}
