//! Reading and checking one LTX file's header and page index with ranged GETs.
//!
//! Owns: what is fetched to learn where a file's pages are (a small file whole, with its
//! checksum verified; a large one as header and tail), and the checks a file must pass
//! before any of its pages is served: the header is valid and names the TXIDs its key
//! says, the index parses, and every entry lies inside the page area, in order, without
//! overlap, for a page within the header's commit. The file checksum covers every byte, so
//! only a whole read verifies it: small files always are; a large file's pages are each
//! checked against their index entry when fetched (`ltx::decode_page_frame`).
//!
//! Requests (through `fetch::Source`, so the disk cache may answer them instead): a
//! small file, one GET; a large one, two concurrent ones (the header with the first
//! frames, 64 KiB, whose pages go to the cache, and a tail of about
//! 1/256 of the file, which usually holds the whole index), plus one when the index is
//! longer than that tail.

use std::sync::Arc;

use bytes::Bytes;
use engine::storage::{LtxInfo, LtxKey, ReplicaStore};
use ltx::{Decoder, Header, PageIndexEntry, HEADER_SIZE, TRAILER_SIZE};

use crate::error::VfsError;
use crate::fetch::{Cost, Source};

/// Files up to this size are fetched whole and their checksum verified.
pub const WHOLE_FILE_BYTES: u64 = 256 << 10;
/// The tail fetched first from a large file: enough for the whole index of a file of
/// incompressible 4 KiB pages (about 10 bytes of index per 4 KiB frame), so one GET
/// usually brings it; between 64 KiB (Litestream's readers fetch 32 KiB) and 8 MiB.
fn tail_bytes(size: u64) -> u64 {
    (size / 256).clamp(64 << 10, 8 << 20)
}
/// The head fetched from a large file: the header and the first page frames, so the
/// pages a query reads first (page 1, the schema, and the roots of the first tables,
/// which a snapshot holds in page order at its start) come with the index instead of one
/// dependent GET each (issue 22: time to first query).
const HEAD_BYTES: u64 = 64 << 10;
/// Bytes between the index and the end: the index size (u64) and the trailer.
const FOOTER_BYTES: u64 = 8 + TRAILER_SIZE as u64;
/// The end-of-pages marker between the last page frame and the index.
const END_MARKER_BYTES: u64 = 6;

/// Decoded pages, by page number.
pub type Pages = Vec<(u32, Arc<[u8]>)>;

/// Where one file's pages are.
pub struct FileIndex {
    pub key: LtxKey,
    /// As listed: the size and creation time name the file in the disk cache.
    pub info: LtxInfo,
    pub header: Header,
    pub entries: Vec<PageIndexEntry>,
    /// The decoded pages of a file read whole (its checksum verified), for the cache.
    pub pages: Pages,
    /// What loading it cost.
    pub cost: Cost,
}

/// Fetches and checks `info`'s header and index.
pub async fn load(source: &Source, info: &LtxInfo) -> Result<FileIndex, VfsError> {
    let store = source.store.as_ref();
    let key = info.key;
    if info.size_bytes < HEADER_SIZE as u64 + END_MARKER_BYTES + FOOTER_BYTES {
        return Err(VfsError::bad_file(
            store,
            &key,
            format!(
                "listed size {} is too small for an LTX file",
                info.size_bytes
            ),
        ));
    }
    if info.size_bytes <= WHOLE_FILE_BYTES {
        let whole = source.read(info, 0..info.size_bytes).await?;
        let mut f = load_whole(store, info, &whole.bytes)?;
        f.cost = whole.cost;
        return Ok(f);
    }
    let size = info.size_bytes;
    let tail_from = size - tail_bytes(size).min(size);
    let (head, tail) = futures::try_join!(
        source.read(info, 0..HEAD_BYTES.min(tail_from).max(HEADER_SIZE as u64)),
        source.read(info, tail_from..size),
    )?;
    let mut cost = head.cost;
    cost += tail.cost;
    let (head, tail) = (head.bytes, tail.bytes);
    let header = Header::from_bytes(&head).map_err(|e| VfsError::decode(store, &key, e))?;
    check_header(store, &key, &header)?;
    if (tail.len() as u64) < FOOTER_BYTES + 1 {
        return Err(VfsError::bad_file(
            store,
            &key,
            "the file is shorter than its listing says".into(),
        ));
    }
    let at = tail.len() - FOOTER_BYTES as usize;
    let index_bytes = u64::from_be_bytes(tail[at..at + 8].try_into().expect("8 bytes"));
    let needed = index_bytes.saturating_add(FOOTER_BYTES);
    let tail = if needed > tail.len() as u64 {
        if needed > size - HEADER_SIZE as u64 {
            return Err(VfsError::bad_file(
                store,
                &key,
                format!("index size {index_bytes} does not fit in the file"),
            ));
        }
        let more = source.read(info, size - needed..size).await?;
        cost += more.cost;
        more.bytes
    } else {
        tail
    };
    let entries = ltx::parse_page_index(&tail).map_err(|e| VfsError::decode(store, &key, e))?;
    let index_start = size - index_bytes - FOOTER_BYTES;
    check_entries(store, &key, &header, &entries, index_start)?;
    let pages = head_pages(store, &key, &header, &entries, &head)?;
    Ok(FileIndex {
        key,
        info: info.clone(),
        header,
        entries,
        pages,
        cost,
    })
}

/// A file read whole: decoded front to back, so its checksum is verified.
fn load_whole(
    store: &dyn ReplicaStore,
    info: &LtxInfo,
    bytes: &Bytes,
) -> Result<FileIndex, VfsError> {
    let key = &info.key;
    let mut dec = Decoder::new(&bytes[..]).map_err(|e| VfsError::decode(store, key, e))?;
    let header = dec.header().clone();
    check_header(store, key, &header)?;
    let mut pages = Vec::new();
    let mut buf = vec![0u8; header.page_size.bytes()];
    while let Some(pgno) = dec
        .next_page(&mut buf)
        .map_err(|e| VfsError::decode(store, key, e))?
    {
        pages.push((pgno.get(), Arc::<[u8]>::from(&buf[..])));
    }
    dec.finish().map_err(|e| VfsError::decode(store, key, e))?;
    let entries = ltx::parse_page_index(bytes).map_err(|e| VfsError::decode(store, key, e))?;
    Ok(FileIndex {
        key: *key,
        info: info.clone(),
        header,
        entries,
        pages,
        cost: Cost::default(),
    })
}

/// The pages whose frames lie whole in `head` (the file's first bytes), decoded and
/// checked against their index entries.
fn head_pages(
    store: &dyn ReplicaStore,
    key: &LtxKey,
    header: &Header,
    entries: &[PageIndexEntry],
    head: &[u8],
) -> Result<Pages, VfsError> {
    let mut pages = Vec::new();
    for e in entries {
        let end = e.offset + e.size;
        if end > head.len() as u64 {
            break;
        }
        let mut page = vec![0u8; header.page_size.bytes()];
        ltx::decode_page_frame(e, &head[e.offset as usize..end as usize], &mut page)
            .map_err(|err| VfsError::decode(store, key, err))?;
        pages.push((e.pgno.get(), Arc::from(page)));
    }
    Ok(pages)
}

fn check_header(store: &dyn ReplicaStore, key: &LtxKey, h: &Header) -> Result<(), VfsError> {
    if h.min_txid != key.min || h.max_txid != key.max {
        return Err(VfsError::bad_file(
            store,
            key,
            format!(
                "the header says TXIDs {}-{}, the name says {}-{}",
                h.min_txid, h.max_txid, key.min, key.max
            ),
        ));
    }
    Ok(())
}

fn check_entries(
    store: &dyn ReplicaStore,
    key: &LtxKey,
    h: &Header,
    entries: &[PageIndexEntry],
    index_start: u64,
) -> Result<(), VfsError> {
    let pages_end = index_start.saturating_sub(END_MARKER_BYTES);
    // One page frame: at most what one page adds to a file.
    let max_frame = ltx::max_file_bytes(h.page_size, 1);
    let mut next_free = HEADER_SIZE as u64;
    for e in entries {
        let bad = |why: &str| {
            VfsError::bad_file(
                store,
                key,
                format!(
                    "index entry for page {} (offset {}, {} bytes) {why}",
                    e.pgno, e.offset, e.size
                ),
            )
        };
        if e.pgno.get() > h.commit {
            return Err(bad(&format!("is beyond the header's commit {}", h.commit)));
        }
        if e.offset < next_free || e.offset.saturating_add(e.size) > pages_end {
            return Err(bad("overlaps another frame or lies outside the page area"));
        }
        if e.size < 6 || e.size > max_frame {
            return Err(bad("has an impossible frame size"));
        }
        next_free = e.offset + e.size;
    }
    Ok(())
}
