//! Reading SQLite's write-ahead log: header, frames, salts, cumulative checksums in both
//! byte orders, and commit boundaries.
//!
//! Owns: the WAL byte layout (32-byte header, 24-byte frame headers), the checksum chain,
//! and the answer to "which committed frames lie after this position?" ([`scan`]). It
//! tells a torn tail (frames after the last commit that do not validate: normal after a
//! crash or a rollback) from corruption (a frame that fails its checksum while a *committed*
//! transaction with the same salts follows it).
//!
//! Does not: open the database, take locks, or decide what to capture (`replicate::capture`
//! does). Reads are positioned ([`ReadAt`]) so one `File` can be shared, and so tests and
//! fuzzing can scan bytes in memory.
//!
//! Layout (SQLite file format, section 4): header = magic u32 (0x377f0682: checksums read
//! little-endian, 0x377f0683: big-endian), version u32 (3007000), page size u32,
//! checkpoint sequence u32, salt-1 u32, salt-2 u32, checksum-1 u32, checksum-2 u32, all
//! big-endian. Frame header = page number u32, database size after commit u32 (0 unless
//! this is a commit frame), salt-1, salt-2, checksum-1, checksum-2. The checksum of a
//! frame covers its first 8 header bytes and its page, chained from the previous frame
//! (the first frame chains from the header's checksum).

use crate::platform::FileExt;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;

use ltx::{PageNo, PageSize};

/// Positioned reads of a WAL: a `File`, or bytes in memory.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

pub const WAL_HEADER_SIZE: u64 = 32;
pub const FRAME_HEADER_SIZE: u64 = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;
/// Bytes read per positioned read while scanning: whole frames, about 1 MiB.
const SCAN_CHUNK_BYTES: u64 = 1 << 20;

/// A parsed WAL header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    pub big_endian: bool,
    pub page_size: PageSize,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// The header's own checksum: the start of the frame checksum chain.
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Parses and verifies a header. `None` when the bytes are not a valid WAL header
    /// (an empty, truncated or never-written WAL is not an error: there is nothing in it).
    pub fn parse(b: &[u8]) -> Option<WalHeader> {
        if b.len() < WAL_HEADER_SIZE as usize {
            return None;
        }
        let u = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let big_endian = match u(0) {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return None,
        };
        if u(4) != VERSION {
            return None;
        }
        let page_size = PageSize::from_sqlite_header(u(8)).ok()?;
        let checksum = (u(24), u(28));
        if checksum_bytes(big_endian, &b[..24], (0, 0)) != checksum {
            return None;
        }
        Some(WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: u(12),
            salt1: u(16),
            salt2: u(20),
            checksum,
        })
    }

    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE + self.page_size.get() as u64
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
pub fn checksum_bytes(big_endian: bool, data: &[u8], s: (u32, u32)) -> (u32, u32) {
    debug_assert!(data.len().is_multiple_of(8));
    let (mut s1, mut s2) = s;
    for w in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes(w[0..4].try_into().unwrap()),
                u32::from_be_bytes(w[4..8].try_into().unwrap()),
            )
        } else {
            (
                u32::from_le_bytes(w[0..4].try_into().unwrap()),
                u32::from_le_bytes(w[4..8].try_into().unwrap()),
            )
        };
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    (s1, s2)
}

/// A proven position in a WAL: just past a commit frame (or just past the header), with
/// the running checksum there, so a later scan can continue the chain without re-reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalCursor {
    pub offset: u64,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: (u32, u32),
    pub big_endian: bool,
}

/// Where a scan starts.
#[derive(Clone, Copy, Debug)]
pub enum ScanFrom {
    /// From the first frame: everything committed in the WAL is new.
    Start,
    /// From a cursor of an earlier scan. If the WAL restarted exactly once since (salt-1
    /// one higher, valid header), the scan continues from the new WAL's first frame: the
    /// caller's pin guarantees the restart happened only after everything up to the
    /// cursor was backfilled (see `sqlite::db`, invariant W1).
    Cursor(WalCursor),
}

/// The committed frames a scan found after its starting point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frames {
    /// Byte offset where the scan started (32 after a restart).
    pub start: u64,
    /// Just past the last valid commit frame (equal to the start when none).
    pub end: WalCursor,
    /// Database size in pages after the last commit, if any commit was found.
    pub commit: Option<u32>,
    /// Newest version of each page committed between `start` and `end`: (page, byte
    /// offset of its data in the WAL), ascending by page.
    pub pages: Vec<(PageNo, u64)>,
    /// Commit frames found (SQLite transactions covered).
    pub commits: u32,
    /// Set when a frame failed its checksum although a committed transaction follows it:
    /// real damage, not a torn tail. The scan stops before the damaged frame, as SQLite's
    /// own recovery would.
    pub corruption: Option<String>,
    /// The scan stopped at a commit because it had read its byte limit
    /// ([`scan_limited`]): committed frames may follow `end`.
    pub cut: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No valid WAL header: the WAL is empty, truncated or not yet written.
    NoHeader,
    /// The WAL is not a continuation of the cursor: different salts that a single restart
    /// does not explain, a page size change, or a file shorter than the cursor.
    Unrelated,
    Frames(Frames),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Size of the WAL file when scanned.
    pub file_size: u64,
    pub outcome: Outcome,
}

fn read_header<R: ReadAt + ?Sized>(f: &R) -> io::Result<(u64, Option<WalHeader>)> {
    let size = f.size()?;
    if size < WAL_HEADER_SIZE {
        return Ok((size, None));
    }
    let mut b = [0u8; WAL_HEADER_SIZE as usize];
    f.read_exact_at(&mut b, 0)?;
    Ok((size, WalHeader::parse(&b)))
}

/// Scans the WAL for committed frames after `from`.
pub fn scan<R: ReadAt + ?Sized>(f: &R, page_size: PageSize, from: &ScanFrom) -> io::Result<Scan> {
    scan_limited(f, page_size, from, None)
}

/// [`scan`] that stops at the first commit frame at or past `max_bytes` from where it
/// starts (Litestream's `max-sync-wal-bytes`): a transaction is never split, so one larger
/// than the limit is read whole. `Frames::cut` says whether it stopped there.
pub fn scan_limited<R: ReadAt + ?Sized>(
    f: &R,
    page_size: PageSize,
    from: &ScanFrom,
    max_bytes: Option<u64>,
) -> io::Result<Scan> {
    let (file_size, header) = read_header(f)?;
    let Some(h) = header else {
        return Ok(Scan {
            file_size,
            outcome: Outcome::NoHeader,
        });
    };
    if h.page_size != page_size {
        return Ok(Scan {
            file_size,
            outcome: Outcome::Unrelated,
        });
    }
    let start = match from {
        ScanFrom::Start => cursor_at_header(&h),
        ScanFrom::Cursor(c)
            if c.salt1 == h.salt1 && c.salt2 == h.salt2 && c.big_endian == h.big_endian =>
        {
            if c.offset > file_size
                || c.offset < WAL_HEADER_SIZE
                || !(c.offset - WAL_HEADER_SIZE).is_multiple_of(h.frame_size())
            {
                return Ok(Scan {
                    file_size,
                    outcome: Outcome::Unrelated,
                });
            }
            *c
        }
        // Invariant W2: salt-1 one past ours is exactly one restart, whose old WAL we
        // captured whole (W1); read the new WAL from its header on.
        ScanFrom::Cursor(c) if h.salt1 == c.salt1.wrapping_add(1) => cursor_at_header(&h),
        ScanFrom::Cursor(_) => {
            return Ok(Scan {
                file_size,
                outcome: Outcome::Unrelated,
            })
        }
    };
    let frames = walk(f, &h, start, file_size, max_bytes)?;
    Ok(Scan {
        file_size,
        outcome: Outcome::Frames(frames),
    })
}

fn cursor_at_header(h: &WalHeader) -> WalCursor {
    WalCursor {
        offset: WAL_HEADER_SIZE,
        salt1: h.salt1,
        salt2: h.salt2,
        checksum: h.checksum,
        big_endian: h.big_endian,
    }
}

/// Checks that the WAL still holds, unchanged, a valid chain of frames with these salts
/// from its header up to `offset`, ending at a commit frame (or `offset` is the header
/// end). Returns the cursor there, or `None` if the WAL is not that WAL any more.
pub fn verify_prefix<R: ReadAt + ?Sized>(
    f: &R,
    page_size: PageSize,
    salt1: u32,
    salt2: u32,
    offset: u64,
) -> io::Result<Option<WalCursor>> {
    let (file_size, header) = read_header(f)?;
    let Some(h) = header else { return Ok(None) };
    if h.page_size != page_size
        || h.salt1 != salt1
        || h.salt2 != salt2
        || offset > file_size
        || offset < WAL_HEADER_SIZE
    {
        return Ok(None);
    }
    if !(offset - WAL_HEADER_SIZE).is_multiple_of(h.frame_size()) {
        return Ok(None);
    }
    let start = cursor_at_header(&h);
    if offset == WAL_HEADER_SIZE {
        return Ok(Some(start));
    }
    let frames = walk(f, &h, start, offset, None)?;
    Ok((frames.end.offset == offset).then_some(frames.end))
}

/// Reads one page's data at `data_offset` (from [`Frames::pages`]).
pub fn read_page<R: ReadAt + ?Sized>(f: &R, data_offset: u64, buf: &mut [u8]) -> io::Result<()> {
    f.read_exact_at(buf, data_offset)
}

/// Whether the WAL still starts with the header of the generation `end` belongs to
/// (same salts), read from the file now. Called after a capture has read its frames'
/// pages: SQLite writes a restarted WAL's new header before any of its frames, so if the
/// header is unchanged after the reads, no frame they read had been overwritten by the
/// next generation (invariant W3 in docs/design.md). A file too short for a header (a
/// TRUNCATE checkpoint) is a change.
pub fn still_generation_of<R: ReadAt + ?Sized>(f: &R, end: &WalCursor) -> io::Result<bool> {
    let mut b = [0u8; WAL_HEADER_SIZE as usize];
    match f.read_exact_at(&mut b, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    Ok(WalHeader::parse(&b).is_some_and(|h| (h.salt1, h.salt2) == (end.salt1, end.salt2)))
}

/// Walks valid frames from `start` up to `limit` bytes, remembering the newest version of
/// each page per transaction and keeping only committed ones.
fn walk<R: ReadAt + ?Sized>(
    f: &R,
    h: &WalHeader,
    start: WalCursor,
    limit: u64,
    max_bytes: Option<u64>,
) -> io::Result<Frames> {
    let frame_size = h.frame_size();
    let mut committed: BTreeMap<u32, u64> = BTreeMap::new();
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut end = start;
    let mut commit = None;
    let mut commits = 0;
    let mut corruption = None;
    let mut cut = false;
    let mut chain = start.checksum;
    let mut off = start.offset;
    let mut chunk = Vec::new();
    let mut chunk_start = 0u64;
    // Reads start small and double: a scan from a cursor usually finds a few new frames
    // followed by an older generation's leftovers, and must not read megabytes of those.
    let max_frames_per_chunk = (SCAN_CHUNK_BYTES / frame_size).max(1);
    let mut frames_per_chunk = 4u64.min(max_frames_per_chunk);
    while off + frame_size <= limit {
        if off < chunk_start || off + frame_size > chunk_start + chunk.len() as u64 {
            let n = ((limit - off) / frame_size).min(frames_per_chunk);
            frames_per_chunk = (frames_per_chunk * 2).min(max_frames_per_chunk);
            chunk.resize((n * frame_size) as usize, 0);
            f.read_exact_at(&mut chunk, off)?;
            chunk_start = off;
        }
        let at = (off - chunk_start) as usize;
        let frame = &chunk[at..at + frame_size as usize];
        match check_frame(h, frame, chain) {
            Some((pgno, db_size, sum)) => {
                chain = sum;
                pending.push((pgno, off + FRAME_HEADER_SIZE));
                off += frame_size;
                if db_size != 0 {
                    committed.extend(pending.drain(..));
                    commit = Some(db_size);
                    commits += 1;
                    end = WalCursor {
                        offset: off,
                        checksum: chain,
                        ..start
                    };
                    if max_bytes.is_some_and(|m| off - start.offset >= m) {
                        cut = off + frame_size <= limit;
                        break;
                    }
                }
            }
            // A frame with other salts is a leftover of an earlier WAL generation: the
            // normal end of this one. Only a frame of this generation can be damage.
            None if frame[8..16] != frame_salts(h) => break,
            None => {
                if let Some(later) = committed_frame_after(f, h, off, limit, frame)? {
                    corruption = Some(format!(
                        "frame at WAL byte {off} fails its checksum, but a committed transaction follows at byte {later}"
                    ));
                }
                break;
            }
        }
    }
    let pages = committed
        .into_iter()
        .filter_map(|(p, o)| PageNo::new(p).ok().map(|p| (p, o)))
        .collect();
    Ok(Frames {
        start: start.offset,
        end,
        commit,
        pages,
        commits,
        corruption,
        cut,
    })
}

/// The header's salts as they appear in a frame header (bytes 8..16).
fn frame_salts(h: &WalHeader) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&h.salt1.to_be_bytes());
    b[4..].copy_from_slice(&h.salt2.to_be_bytes());
    b
}

/// Validates one frame against the running checksum: salts, page number, checksum.
/// Returns (page number, database size if commit, new checksum).
fn check_frame(h: &WalHeader, frame: &[u8], chain: (u32, u32)) -> Option<(u32, u32, (u32, u32))> {
    let u = |o: usize| u32::from_be_bytes(frame[o..o + 4].try_into().expect("4 bytes"));
    let (pgno, db_size) = (u(0), u(4));
    if pgno == 0 || u(8) != h.salt1 || u(12) != h.salt2 {
        return None;
    }
    let sum = checksum_bytes(h.big_endian, &frame[..8], chain);
    let sum = checksum_bytes(h.big_endian, &frame[FRAME_HEADER_SIZE as usize..], sum);
    (sum == (u(16), u(20))).then_some((pgno, db_size, sum))
}

/// After a frame that fails its checksum: does a commit frame with the same salts follow,
/// whose checksum chains from the stored checksums (so the chain was intact when written)?
/// If so the failing frame was damaged after it was written. Leftovers of a rolled-back
/// transaction never contain a commit frame, and older generations have other salts.
fn committed_frame_after<R: ReadAt + ?Sized>(
    f: &R,
    h: &WalHeader,
    bad_off: u64,
    limit: u64,
    bad: &[u8],
) -> io::Result<Option<u64>> {
    let frame_size = h.frame_size();
    let stored = |fr: &[u8]| {
        let u = |o: usize| u32::from_be_bytes(fr[o..o + 4].try_into().expect("4 bytes"));
        (u(16), u(20))
    };
    let mut chain = stored(bad);
    let mut off = bad_off + frame_size;
    let mut frame = vec![0u8; frame_size as usize];
    while off + frame_size <= limit {
        f.read_exact_at(&mut frame, off)?;
        match check_frame(h, &frame, chain) {
            Some((_, db_size, sum)) => {
                if db_size != 0 {
                    return Ok(Some(off));
                }
                chain = sum;
            }
            None => {
                if frame[8..16] != bad[8..16] {
                    return Ok(None); // another generation's frames
                }
                chain = stored(&frame);
            }
        }
        off += frame_size;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const FRAME: u64 = 536;

    fn fixture(case: &str) -> File {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/wal")
            .join(case)
            .join("wal");
        File::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn ps() -> PageSize {
        PageSize::new(512).unwrap()
    }

    fn frames_of(case: &str) -> Frames {
        match scan(&fixture(case), ps(), &ScanFrom::Start)
            .unwrap()
            .outcome
        {
            Outcome::Frames(f) => f,
            o => panic!("{case}: {o:?}"),
        }
    }

    fn off_after(frames: u64) -> u64 {
        32 + frames * FRAME
    }

    /// `max-sync-wal-bytes`: a limited scan stops at the first commit at or past the limit
    /// (never inside a transaction); scans from each end cover the whole WAL in order.
    #[test]
    fn a_limited_scan_stops_at_a_commit_past_the_limit() {
        let f = fixture("ok");
        let whole = frames_of("ok");
        let mut from = ScanFrom::Start;
        let mut ends = Vec::new();
        let mut commits = 0;
        loop {
            let Outcome::Frames(part) = scan_limited(&f, ps(), &from, Some(1)).unwrap().outcome
            else {
                panic!("not frames")
            };
            if part.commit.is_none() {
                break;
            }
            commits += part.commits;
            assert_eq!(part.commits, 1, "one commit per part with a 1-byte limit");
            ends.push(part.end.offset);
            let cut = part.cut;
            from = ScanFrom::Cursor(part.end);
            if !cut {
                break;
            }
        }
        assert_eq!(commits, whole.commits);
        assert_eq!(ends.last(), Some(&whole.end.offset));
        assert!(ends.windows(2).all(|w| w[0] < w[1]));
        // A limit past the end reads everything in one part, not cut.
        let Outcome::Frames(all) = scan_limited(&f, ps(), &ScanFrom::Start, Some(1 << 30))
            .unwrap()
            .outcome
        else {
            panic!("not frames")
        };
        assert_eq!((all.end.offset, all.cut), (whole.end.offset, false));
    }

    #[test]
    fn ok_wal_has_four_commits() {
        let f = frames_of("ok");
        assert_eq!(f.commits, 4);
        assert_eq!(f.end.offset, off_after(11));
        assert_eq!(f.corruption, None);
        assert!(f.commit.is_some());
        // Pages ascend and each points at page data inside a frame.
        assert!(f.pages.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(f.pages.iter().all(|&(_, o)| (o - 32 - 24) % FRAME == 0));
    }

    #[test]
    fn torn_tail_stops_at_last_whole_commit() {
        let f = frames_of("torn-tail");
        assert_eq!(f.commits, 3);
        assert_eq!(f.end.offset, off_after(10));
        assert_eq!(f.corruption, None, "a torn tail is normal");
    }

    #[test]
    fn bad_checksum_is_corruption_and_stops_before_it() {
        let f = frames_of("bad-frame-checksum");
        assert_eq!(f.commits, 1);
        assert_eq!(f.end.offset, off_after(1));
        let c = f.corruption.expect("damage must be reported");
        assert!(c.contains(&format!("byte {}", off_after(1))), "{c}");
    }

    #[test]
    fn big_endian_checksums_read_the_same() {
        let (le, be) = (frames_of("ok"), frames_of("big-endian"));
        assert!(be.end.big_endian && !le.end.big_endian);
        assert_eq!(
            (le.commits, le.end.offset, &le.pages, le.commit),
            (be.commits, be.end.offset, &be.pages, be.commit)
        );
    }

    #[test]
    fn open_transaction_is_not_captured() {
        let f = frames_of("incomplete-txn");
        assert_eq!(f.commits, 1);
        assert_eq!(f.end.offset, off_after(1));
        assert_eq!(f.corruption, None);
    }

    #[test]
    fn rollback_leftovers_are_not_corruption() {
        let f = frames_of("rollback-leftover");
        assert_eq!(f.commits, 2);
        assert_eq!(f.end.offset, off_after(4));
        assert_eq!(f.corruption, None);
    }

    #[test]
    fn restarted_wal_reads_only_the_new_generation() {
        let f = frames_of("restarted");
        assert_eq!(f.commits, 1);
        assert_eq!(f.end.offset, off_after(6));
        assert_eq!(f.corruption, None, "old-generation frames have other salts");
    }

    #[test]
    fn salt_mismatch_has_no_frames() {
        let f = frames_of("salt-mismatch");
        assert_eq!((f.commits, f.end.offset, f.commit), (0, 32, None));
        assert!(f.pages.is_empty());
    }

    #[test]
    fn continuing_from_a_cursor_sees_only_later_commits() {
        let wal = fixture("ok");
        let all = frames_of("ok");
        let first = verify_prefix(&wal, ps(), all.end.salt1, all.end.salt2, off_after(1))
            .unwrap()
            .expect("commit boundary");
        let rest = match scan(&wal, ps(), &ScanFrom::Cursor(first)).unwrap().outcome {
            Outcome::Frames(f) => f,
            o => panic!("{o:?}"),
        };
        assert_eq!(
            (rest.start, rest.commits, rest.end),
            (off_after(1), 3, all.end)
        );
        // Not a commit boundary, wrong salts, past the end: not a proven position.
        assert_eq!(
            verify_prefix(&wal, ps(), all.end.salt1, all.end.salt2, off_after(2)).unwrap(),
            None
        );
        assert_eq!(
            verify_prefix(&wal, ps(), all.end.salt1 ^ 1, all.end.salt2, off_after(1)).unwrap(),
            None
        );
        assert_eq!(
            verify_prefix(&wal, ps(), all.end.salt1, all.end.salt2, off_after(12)).unwrap(),
            None
        );
    }

    #[test]
    fn one_restart_continues_other_salts_are_unrelated() {
        let wal = fixture("restarted");
        let new = frames_of("restarted");
        let old = WalCursor {
            salt1: new.end.salt1.wrapping_sub(1),
            offset: off_after(3),
            ..new.end
        };
        match scan(&wal, ps(), &ScanFrom::Cursor(old)).unwrap().outcome {
            Outcome::Frames(f) => assert_eq!((f.start, f.end), (32, new.end)),
            o => panic!("{o:?}"),
        }
        let stranger = WalCursor {
            salt1: new.end.salt1.wrapping_add(7),
            ..old
        };
        assert_eq!(
            scan(&wal, ps(), &ScanFrom::Cursor(stranger))
                .unwrap()
                .outcome,
            Outcome::Unrelated
        );
    }

    #[test]
    fn empty_and_short_wals_have_no_header() {
        let d = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("empty", vec![]),
            ("short", vec![0x37, 0x7f, 0x06, 0x82]),
            ("junk", vec![9u8; 600]),
        ] {
            let p = d.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let s = scan(&File::open(&p).unwrap(), ps(), &ScanFrom::Start).unwrap();
            assert_eq!(s.outcome, Outcome::NoHeader, "{name}");
        }
    }

    #[test]
    fn bytes_in_memory_scan_like_the_file() {
        for case in ["ok", "torn-tail", "bad-frame-checksum", "restarted"] {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/wal")
                .join(case)
                .join("wal");
            let bytes = std::fs::read(p).unwrap();
            let mem = scan(&bytes[..], ps(), &ScanFrom::Start).unwrap();
            assert_eq!(
                mem,
                scan(&fixture(case), ps(), &ScanFrom::Start).unwrap(),
                "{case}"
            );
        }
    }

    #[test]
    fn checksum_known_answer() {
        // Eight zero bytes leave the sums at zero; one word pair (1, 2) gives (1, 3).
        assert_eq!(checksum_bytes(false, &[0; 8], (0, 0)), (0, 0));
        assert_eq!(
            checksum_bytes(true, &[0, 0, 0, 1, 0, 0, 0, 2], (0, 0)),
            (1, 3)
        );
        assert_eq!(
            checksum_bytes(false, &[1, 0, 0, 0, 2, 0, 0, 0], (0, 0)),
            (1, 3)
        );
    }
}
