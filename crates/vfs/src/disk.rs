//! The disk cache (`cache_dir=`): blocks of LTX file bytes kept in files under one
//! directory, reused by later opens and by other processes, bounded in bytes.
//!
//! Owns: the entry format, its verification, how entries are written and evicted.
//! - One entry is one block ([`BLOCK_BYTES`], the last of a file shorter) of one LTX file
//!   as the store returns it (decrypted), named after a hash of the file's identity (the
//!   replica location, its level and TXIDs, listed size and creation time: a file
//!   rewritten under the same name is another file) and the block number.
//! - An entry is `MAGIC`, the CRC-64 of the identity and the data, the identity's length
//!   and bytes, then the data. A read checks all of it; an entry that fails (damaged,
//!   truncated, another file's) is deleted and reported as [`Lookup::Bad`]: the caller
//!   fetches the block again, and never serves it. (A CRC detects damage, not a forger
//!   who can write the directory: the directory is the user's, mode 0700.)
//! - Writes go to a temp file created exclusively (`O_CREAT|O_EXCL`, which never follows
//!   a symbolic link), mode 0600, fsynced, then renamed over the entry's name.
//! - The bound: each instance counts the bytes it wrote on top of the directory's size
//!   at open; past the bound it lists the directory and deletes the least recently used
//!   entries (a hit refreshes the entry's mtime) down to 90% of it. Several processes
//!   sharing a directory each enforce the bound this way.
//!
//! A failure to write the cache is not a failed read: reported once, the block is
//! served from what was fetched. Does not fetch anything (`fetch::Source` does).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use engine::fsutil::FileMode;
use engine::storage::LtxInfo;

use crate::error::VfsError;

/// The bytes of an LTX file one entry holds.
pub const BLOCK_BYTES: u64 = 128 << 10;
const MAGIC: &[u8; 8] = b"SRVFSB01";
const ENTRY_EXT: &str = "blk";

/// One LTX file of one replica, as the cache names it.
#[derive(Clone, Debug)]
pub struct FileId {
    /// Written into every entry and checked on read.
    identity: String,
    /// The entry name's prefix: a hash of the identity.
    stem: String,
}

impl FileId {
    pub fn new(location: &str, info: &LtxInfo) -> FileId {
        let created = info
            .created
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let identity = format!(
            "{location}\n{}\n{}\n{created}",
            crate::error::object_name(&info.key),
            info.size_bytes
        );
        let stem = format!("{:016x}", ltx::crc64_iso(identity.as_bytes()));
        FileId { identity, stem }
    }
}

/// What a lookup found.
pub enum Lookup {
    Hit(Bytes),
    Miss,
    /// An entry was there and failed its checks: deleted, to be fetched again.
    Bad,
}

pub struct DiskCache {
    dir: PathBuf,
    limit: u64,
    used: AtomicU64,
    evicting: Mutex<()>,
    write_failed: AtomicBool,
    seq: AtomicU64,
}

impl DiskCache {
    /// Opens (creating, mode 0700) the cache directory `dir` bounded at `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<DiskCache, VfsError> {
        let setup = |what: &str, e: std::io::Error| {
            VfsError::Setup(format!("cache_dir {}: {what}: {e}", dir.display()))
        };
        create_private_dir(dir).map_err(|e| setup("cannot create it", e))?;
        let meta = fs::symlink_metadata(dir).map_err(|e| setup("cannot read it", e))?;
        if !meta.is_dir() {
            return Err(VfsError::Setup(format!(
                "cache_dir {}: not a directory (a symbolic link is not followed)",
                dir.display()
            )));
        }
        let used = entries(dir)
            .map_err(|e| setup("cannot list it", e))?
            .iter()
            .map(|e| e.size)
            .sum();
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            limit,
            used: AtomicU64::new(used),
            evicting: Mutex::new(()),
            write_failed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &FileId, block: u64) -> PathBuf {
        self.dir
            .join(format!("{}-{block:08x}.{ENTRY_EXT}", id.stem))
    }

    /// Block `block` of `id`, verified.
    pub fn get(&self, id: &FileId, block: u64) -> Lookup {
        let path = self.path(id, block);
        let Ok(mut f) = File::open(&path) else {
            return Lookup::Miss;
        };
        let mut raw = Vec::new();
        if f.read_to_end(&mut raw).is_err() {
            return Lookup::Miss;
        }
        match decode(&raw, &id.identity) {
            Some(data) => {
                // Recently used: eviction goes by mtime.
                let _ = f.set_modified(SystemTime::now());
                Lookup::Hit(Bytes::copy_from_slice(data))
            }
            None => {
                let _ = fs::remove_file(&path);
                Lookup::Bad
            }
        }
    }

    /// Stores block `block` of `id`; a failure is reported once and otherwise ignored.
    pub fn put(&self, id: &FileId, block: u64, data: &[u8]) {
        let entry = encode(&id.identity, data);
        match self.write_entry(&self.path(id, block), &entry) {
            Ok(()) => {
                let used =
                    self.used.fetch_add(entry.len() as u64, Ordering::Relaxed) + entry.len() as u64;
                if used > self.limit {
                    self.evict();
                }
            }
            Err(e) => {
                if !self.write_failed.swap(true, Ordering::Relaxed) {
                    crate::host::report(&VfsError::Setup(format!(
                        "cache_dir {}: cannot write an entry ({e}); reading on without caching",
                        self.dir.display()
                    )));
                }
            }
        }
    }

    /// Temp file (exclusive, 0600), fsync, rename.
    fn write_entry(&self, path: &Path, entry: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = engine::fsutil::create_exclusive(&tmp, FileMode::PRIVATE)?;
            f.write_all(entry)?;
            engine::fsutil::commit_tmp(&tmp, &f, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Deletes the least recently used entries until the directory holds at most 90% of
    /// the bound.
    fn evict(&self) {
        let Ok(_one) = self.evicting.try_lock() else {
            return;
        };
        let Ok(mut all) = entries(&self.dir) else {
            return;
        };
        all.sort_by_key(|e| e.modified);
        let mut used: u64 = all.iter().map(|e| e.size).sum();
        let keep = self.limit / 10 * 9;
        for e in all {
            if used <= keep {
                break;
            }
            if fs::remove_file(&e.path).is_ok() {
                used -= e.size;
            }
        }
        self.used.store(used, Ordering::Relaxed);
    }

    /// Bytes the directory's entries hold, as this instance counts them.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The cache directory and its parents, each new one 0700 (the directories of a 0600
/// file).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    engine::fsutil::create_dir_all_durable(dir, FileMode::PRIVATE)
}

struct Entry {
    path: PathBuf,
    size: u64,
    modified: SystemTime,
}

/// The cache entries in `dir` (regular files named `*.blk`).
fn entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let path = e.path();
        if path.extension().is_none_or(|x| x != ENTRY_EXT) {
            continue;
        }
        let Ok(m) = e.metadata() else { continue };
        if m.is_file() {
            out.push(Entry {
                path,
                size: m.len(),
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(out)
}

fn checksum(identity: &str, data: &[u8]) -> u64 {
    let mut h = ltx::Crc64Hasher::new();
    h.update(identity.as_bytes());
    h.update(data);
    h.value()
}

fn encode(identity: &str, data: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(18 + identity.len() + data.len());
    e.extend_from_slice(MAGIC);
    e.extend_from_slice(&checksum(identity, data).to_be_bytes());
    e.extend_from_slice(&(identity.len() as u16).to_be_bytes());
    e.extend_from_slice(identity.as_bytes());
    e.extend_from_slice(data);
    e
}

/// The data of an entry, if it is intact and belongs to `identity`.
fn decode<'a>(raw: &'a [u8], identity: &str) -> Option<&'a [u8]> {
    let rest = raw.strip_prefix(MAGIC)?;
    let (sum, rest) = rest.split_at_checked(8)?;
    let (len, rest) = rest.split_at_checked(2)?;
    let len = u16::from_be_bytes(len.try_into().ok()?) as usize;
    let (id, data) = rest.split_at_checked(len)?;
    (id == identity.as_bytes()
        && u64::from_be_bytes(sum.try_into().ok()?) == checksum(identity, data))
    .then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::storage::LtxKey;
    use ltx::{Level, TxId};

    fn id(n: u64) -> FileId {
        let info = LtxInfo {
            key: LtxKey::new(Level::L0, TxId::new(n).unwrap(), TxId::new(n).unwrap()),
            size_bytes: 1000,
            created: SystemTime::UNIX_EPOCH,
        };
        FileId::new("file:///r", &info)
    }

    #[test]
    fn entries_verify_and_a_damaged_one_is_bad_and_gone() {
        let d = tempfile::tempdir().unwrap();
        let c = DiskCache::open(d.path(), 1 << 20).unwrap();
        assert!(matches!(c.get(&id(1), 0), Lookup::Miss));
        c.put(&id(1), 0, b"hello");
        assert!(matches!(c.get(&id(1), 0), Lookup::Hit(b) if &b[..] == b"hello"));
        // Another file's entry under this name: bad.
        fs::copy(c.path(&id(1), 0), c.path(&id(2), 0)).unwrap();
        assert!(matches!(c.get(&id(2), 0), Lookup::Bad));
        let p = c.path(&id(1), 0);
        let mut raw = fs::read(&p).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        fs::write(&p, raw).unwrap();
        assert!(matches!(c.get(&id(1), 0), Lookup::Bad));
        assert!(!p.exists());
        #[cfg(unix)]
        {
            c.put(&id(1), 0, b"hello");
            assert_eq!(
                engine::platform::mode_of(&fs::metadata(&p).unwrap()) & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn stays_within_its_bound() {
        let d = tempfile::tempdir().unwrap();
        let c = DiskCache::open(d.path(), 100 << 10).unwrap();
        for b in 0..40 {
            c.put(&id(1), b, &[7u8; 10 << 10]);
        }
        let on_disk: u64 = entries(d.path()).unwrap().iter().map(|e| e.size).sum();
        assert!(on_disk <= 100 << 10, "{on_disk}");
        assert!(
            matches!(c.get(&id(1), 39), Lookup::Hit(_)),
            "the newest stays"
        );
    }
}
