//! Merging contiguous LTX files into one.
//!
//! Owns: the streaming k-way merge by page number where the newest input wins,
//! the contiguity and page-size checks on the inputs, and the output header rules
//! (min TXID from the first input, or 1 for a snapshot; max TXID, commit and
//! timestamp from the last; WAL fields 0; NoChecksum). It does not pick which
//! files to compact or where the output goes: that is policy.

use std::io::{Read, Write};

use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::error::{CompactError, EncodeError};
use crate::header::Header;
use crate::lz4::PageEncoding;
use crate::types::{PageNo, TxId};

/// Merges `inputs` (oldest first, contiguous) into one file written to `out`.
/// Every input is read to the end and its checksum verified. If the first input
/// is a snapshot (min TXID 1) the output is one too and must be complete.
pub fn compact<R: Read, W: Write>(
    inputs: Vec<Decoder<R>>,
    out: W,
    encoding: PageEncoding,
) -> Result<(W, Header), CompactError> {
    merge(inputs, out, encoding, false)
}

/// Like [`compact`], but the output is a snapshot (min TXID 1) that must hold
/// every page `1..=commit` except the lock page. Turns a full-database L0 file,
/// or a snapshot plus later files, into a new snapshot.
pub fn compact_as_snapshot<R: Read, W: Write>(
    inputs: Vec<Decoder<R>>,
    out: W,
    encoding: PageEncoding,
) -> Result<(W, Header), CompactError> {
    merge(inputs, out, encoding, true)
}

/// One input of the merge with its current (not yet consumed) page.
struct Cursor<R: Read> {
    dec: Decoder<R>,
    buf: Vec<u8>,
    head: Option<PageNo>,
}

impl<R: Read> Cursor<R> {
    fn advance(&mut self, index: usize) -> Result<(), CompactError> {
        self.head = self
            .dec
            .next_page(&mut self.buf)
            .map_err(|source| CompactError::Decode {
                input: Some(index),
                source,
            })?;
        Ok(())
    }
}

fn check_inputs<R: Read>(inputs: &[Decoder<R>]) -> Result<(), CompactError> {
    let first = inputs.first().ok_or(CompactError::NoInputs)?.header();
    for (index, dec) in inputs.iter().enumerate().skip(1) {
        let h = dec.header();
        if h.page_size != first.page_size {
            return Err(CompactError::PageSizeMismatch {
                index,
                expected: first.page_size.get(),
                got: h.page_size.get(),
            });
        }
    }
    for pair in inputs.windows(2) {
        let (prev, next) = (pair[0].header(), pair[1].header());
        let contiguous = next.min_txid.get() <= prev.max_txid.get().saturating_add(1)
            && next.max_txid > prev.max_txid;
        if !contiguous {
            return Err(CompactError::NotContiguous {
                prev_max: prev.max_txid.get(),
                next_min: next.min_txid.get(),
            });
        }
    }
    Ok(())
}

fn merge<R: Read, W: Write>(
    inputs: Vec<Decoder<R>>,
    out: W,
    encoding: PageEncoding,
    as_snapshot: bool,
) -> Result<(W, Header), CompactError> {
    check_inputs(&inputs)?;
    let first = inputs[0].header();
    let last = inputs[inputs.len() - 1].header();
    let page_size = first.page_size;
    let min_txid = if as_snapshot {
        TxId::ONE
    } else {
        first.min_txid
    };
    let header = Header::new(
        page_size,
        last.commit,
        min_txid,
        last.max_txid,
        last.timestamp_ms,
    );
    let commit = header.commit;

    let mut enc = Encoder::new(out, &header, encoding)?;
    let mut cursors = Vec::with_capacity(inputs.len());
    for (index, dec) in inputs.into_iter().enumerate() {
        let mut c = Cursor {
            dec,
            buf: vec![0u8; page_size.bytes()],
            head: None,
        };
        c.advance(index)?;
        cursors.push(c);
    }

    while let Some(pgno) = cursors.iter().filter_map(|c| c.head).min() {
        // Inputs are oldest first, so the last one holding this page is the newest.
        let winner = cursors
            .iter()
            .rposition(|c| c.head == Some(pgno))
            .expect("some cursor holds the minimum");
        // Pages past the final commit were truncated away; the lock page is never stored.
        if pgno.get() <= commit && !pgno.is_lock_page(page_size) {
            enc.write_page(pgno, &cursors[winner].buf)?;
        }
        for (index, c) in cursors.iter_mut().enumerate() {
            if c.head == Some(pgno) {
                c.advance(index)?;
            }
        }
    }

    for (index, c) in cursors.into_iter().enumerate() {
        c.dec.finish().map_err(|source| CompactError::Decode {
            input: Some(index),
            source,
        })?;
    }
    let (w, _trailer) = enc.finish().map_err(|e| match e {
        EncodeError::IncompleteSnapshot { missing, commit } => {
            CompactError::IncompleteSnapshot { missing, commit }
        }
        e => CompactError::Encode(e),
    })?;
    Ok((w, header))
}
