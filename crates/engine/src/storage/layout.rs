//! The one place that spells replica object keys and file paths.
//!
//! Owns: the `%016x-%016x.ltx` name, Litestream's two layouts
//! (`<root>/ltx/<level decimal>/` for file/sftp/abs/gcs and `<prefix>/<level %04x>/` for S3),
//! Litestream 0.3's read-only `generations/` layout ([`v3`]), and parsing names back.
//! Nothing else in the project formats or parses a key.

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

/// Whether `name` may be used for a named object ([`NamedStore::put_name`] and kin): a
/// non-empty relative `/`-separated path without `.`/`..` or empty segments, control
/// characters (NUL truncates a path in C APIs and SFTP servers) or backslashes (a
/// separator to Windows servers), whose first
/// segment is not a level directory of either layout (`ltx`, four hex digits) nor
/// `generations`. Such an object can never be listed as an LTX file or a 0.3 file, so a
/// restore running at the same time cannot pick it up.
///
/// [`NamedStore::put_name`]: super::NamedStore::put_name
pub fn is_aux_name(name: &str) -> bool {
    // Invariant N1: named objects stay out of every listing a restore plans from.
    let mut segments = name.split('/');
    let first = segments.next().unwrap_or_default();
    let level_dir = first == "ltx"
        || (first.len() == 4 && first.bytes().all(|b| b.is_ascii_hexdigit()))
        || first == v3::GENERATIONS_DIR;
    !level_dir
        && !name.chars().any(|c| c.is_control() || c == '\\')
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The lease object of a replica (see `crate::lease`): `lease.json` at the replica root,
/// outside every level directory (see [`is_aux_name`]), so no listing sees it.
pub const LEASE_NAME: &str = "lease.json";

/// The scratch object `check` writes, reads and deletes to prove a replica works:
/// `.sqlite-replicate-check-<16 hex>` at the replica root. Not an LTX name, outside every
/// level directory (see [`is_aux_name`]).
pub fn check_scratch_name(nonce: u64) -> String {
    format!(".sqlite-replicate-check-{nonce:016x}")
}

/// Litestream 0.3's layout, read-only: `generations/<16hex>/snapshots/<%08x>.snapshot.lz4`
/// and `generations/<16hex>/wal/<%08x>_<%08x>.wal.lz4`, the same under a file root and an
/// S3 prefix.
///
/// A generation is one unbroken history; a snapshot is the whole database (LZ4 frame) taken
/// at a WAL index; a WAL segment is the bytes of that index's `-wal` file from a byte offset
/// (LZ4 frame; the segment at offset 0 starts with the WAL header). Names are lower-case hex
/// only, as 0.3 writes them, so a parsed name formats back to exactly the same path.
pub mod v3 {
    use std::fmt;
    use std::time::SystemTime;

    pub const GENERATIONS_DIR: &str = "generations";

    /// A generation's name: 16 lower-case hex digits, validated.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct GenerationId(String);

    impl GenerationId {
        pub fn parse(name: &str) -> Option<GenerationId> {
            is_generation_name(name).then(|| GenerationId(name.to_string()))
        }

        pub fn as_str(&self) -> &str {
            &self.0
        }
    }

    impl fmt::Display for GenerationId {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    /// What a file of a generation holds.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum V3Kind {
        /// The whole database, taken at WAL index `index`.
        Snapshot { index: u32 },
        /// Bytes of WAL index `index`'s `-wal` file starting at byte `offset`.
        Wal { index: u32, offset: u32 },
    }

    /// One snapshot or WAL segment as a listing reports it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct V3File {
        pub generation: GenerationId,
        pub kind: V3Kind,
        /// Compressed size: what a fetch transfers (the uncompressed size is not recorded).
        pub size_bytes: u64,
        /// File mtime or object LastModified: 0.3 picks the generation by the newest one.
        pub modified: SystemTime,
    }

    impl V3File {
        /// The WAL index the file belongs to (a snapshot's is the index it was taken at).
        pub fn index(&self) -> u32 {
            match self.kind {
                V3Kind::Snapshot { index } | V3Kind::Wal { index, .. } => index,
            }
        }

        /// The path relative to the replica root (file) or bucket prefix (S3).
        pub fn path(&self) -> String {
            match self.kind {
                V3Kind::Snapshot { index } => snapshot_path(&self.generation, index),
                V3Kind::Wal { index, offset } => wal_segment_path(&self.generation, index, offset),
            }
        }
    }

    impl fmt::Display for V3File {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.path())
        }
    }

    pub fn snapshots_dir(generation: &str) -> String {
        format!("{GENERATIONS_DIR}/{generation}/snapshots")
    }

    pub fn wal_dir(generation: &str) -> String {
        format!("{GENERATIONS_DIR}/{generation}/wal")
    }

    pub fn snapshot_path(generation: &GenerationId, index: u32) -> String {
        format!(
            "{}/{}",
            snapshots_dir(generation.as_str()),
            snapshot_name(index)
        )
    }

    pub fn wal_segment_path(generation: &GenerationId, index: u32, offset: u32) -> String {
        format!(
            "{}/{}",
            wal_dir(generation.as_str()),
            wal_segment_name(index, offset)
        )
    }

    /// `<%08x>.snapshot.lz4`.
    pub fn snapshot_name(index: u32) -> String {
        format!("{index:08x}.snapshot.lz4")
    }

    /// `<%08x>_<%08x>.wal.lz4`.
    pub fn wal_segment_name(index: u32, offset: u32) -> String {
        format!("{index:08x}_{offset:08x}.wal.lz4")
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

    /// Parses a path relative to the replica root (an S3 key with the prefix removed):
    /// `generations/<gen>/snapshots/<name>` or `generations/<gen>/wal/<name>`. `None` for
    /// anything else, which a listing ignores.
    pub fn parse_path(path: &str) -> Option<(GenerationId, V3Kind)> {
        let mut parts = path.split('/');
        let (root, generation, dir, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if root != GENERATIONS_DIR || parts.next().is_some() {
            return None;
        }
        let generation = GenerationId::parse(generation)?;
        let kind = match dir {
            "snapshots" => V3Kind::Snapshot {
                index: parse_snapshot_name(name)?,
            },
            "wal" => {
                let (index, offset) = parse_wal_segment_name(name)?;
                V3Kind::Wal { index, offset }
            }
            _ => return None,
        };
        Some((generation, kind))
    }

    pub fn is_generation_name(name: &str) -> bool {
        name.len() == 16 && name.bytes().all(is_lower_hex_digit)
    }

    fn parse_hex8(s: &str) -> Option<u32> {
        if s.len() != 8 || !s.bytes().all(is_lower_hex_digit) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    }

    fn is_lower_hex_digit(b: u8) -> bool {
        b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
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
    fn aux_names_stay_outside_levels() {
        let scratch = check_scratch_name(0xabc);
        assert_eq!(scratch, ".sqlite-replicate-check-0000000000000abc");
        assert!(is_aux_name(&scratch));
        assert!(is_aux_name("lock.json"));
        assert!(is_aux_name("markers/x"));
        for bad in [
            "",
            "ltx/0/0000000000000001-0000000000000001.ltx",
            "0000/0000000000000001-0000000000000001.ltx",
            "0009/x",
            "generations/d644f78ac6339b2c/wal/00000001_00000000.wal.lz4",
            "../x",
            "a//b",
            "./a",
            "/abs",
            "a\0/../../x",
            "lock.json\0.ltx",
            "a\nb",
            "..\\..\\x",
            "markers\\..\\..\\x",
        ] {
            assert!(!is_aux_name(bad), "{bad:?}");
        }
        // Whatever the nonce, the scratch name is never an LTX or 0.3 name.
        for n in [0, 1, u64::MAX] {
            let s = check_scratch_name(n);
            assert_eq!(LtxKey::parse_file_name(Level::L0, &s), None);
            assert_eq!(v3::parse_path(&s), None);
        }
    }

    #[test]
    fn v3_names() {
        assert_eq!(v3::parse_snapshot_name("0000000a.snapshot.lz4"), Some(10));
        assert_eq!(
            v3::parse_wal_segment_name("00000001_00001020.wal.lz4"),
            Some((1, 0x1020))
        );
        assert_eq!(v3::parse_wal_segment_name("1_2.wal.lz4"), None);
        // Upper case would not format back to the same path: 0.3 never writes it.
        assert_eq!(v3::parse_snapshot_name("0000000A.snapshot.lz4"), None);
        assert!(!v3::is_generation_name("D644F78AC6339B2C"));
    }

    #[test]
    fn v3_paths_round_trip() {
        let g = v3::GenerationId::parse("d644f78ac6339b2c").unwrap();
        let cases = [
            (
                v3::V3Kind::Snapshot { index: 10 },
                "generations/d644f78ac6339b2c/snapshots/0000000a.snapshot.lz4",
            ),
            (
                v3::V3Kind::Wal {
                    index: 2,
                    offset: 0x58860,
                },
                "generations/d644f78ac6339b2c/wal/00000002_00058860.wal.lz4",
            ),
        ];
        for (kind, path) in cases {
            let f = v3::V3File {
                generation: g.clone(),
                kind,
                size_bytes: 0,
                modified: SystemTime::UNIX_EPOCH,
            };
            assert_eq!(f.path(), path);
            assert_eq!(v3::parse_path(path), Some((g.clone(), kind)), "{path}");
        }
        for bad in [
            "generations/d644f78ac6339b2c/snapshots/0000000a.snapshot.lz4.tmp",
            "generations/d644f78ac6339b2c/other/00000002_00058860.wal.lz4",
            "generations/d644f78ac6339b2/wal/00000002_00058860.wal.lz4",
            "generations/d644f78ac6339b2c/wal/x/00000002_00058860.wal.lz4",
            "ltx/0/0000000000000001-0000000000000001.ltx",
            "generations/d644f78ac6339b2c",
        ] {
            assert_eq!(v3::parse_path(bad), None, "{bad}");
        }
    }
}
