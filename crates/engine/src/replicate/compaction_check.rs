//! `verify-compaction`: whether a merged file, as read back from the replica, is what its
//! inputs add up to, before anything may rely on it (L0 retention deletes the L0 files a
//! level-1 file covers; restores prefer merged files).
//!
//! The check: the merged file decodes with its index and file checksum intact; its header
//! has the inputs' page size, TXID range (min 1 for a snapshot), final commit and, when
//! it carries one, their last post-apply checksum; its page set is the union of the
//! inputs' pages up to that commit (lock page excluded); and each page has the content of
//! the newest input holding it (compared by page checksum). Applying it therefore gives
//! the same pages as applying its inputs in order.
//!
//! Owns: [`Expected`] (what the inputs add up to, one checksum per page, read from the
//! inputs independently of the merge) and [`check`]. Pure and synchronous; the caller
//! (`maintain.rs`) fetches, decides and retries.

use std::collections::BTreeMap;
use std::io::Read;

use ltx::{page_checksum, Decoder, Header, PageNo};

/// Why a merged file is not what its inputs add up to.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("input {index} does not decode: {source}")]
    Input {
        index: usize,
        source: ltx::DecodeError,
    },
    #[error("no inputs")]
    NoInputs,
    #[error("the merged file does not decode (checksum or format): {0}")]
    Merged(ltx::DecodeError),
    #[error("the merged file's {what} is {got}, its inputs give {want}")]
    Header {
        what: &'static str,
        got: String,
        want: String,
    },
    #[error(
        "the merged file has {got} pages, its inputs give {want}; first difference at page {first}"
    )]
    PageSet { got: usize, want: usize, first: u32 },
    #[error("page {pgno} of the merged file differs from the newest input holding it")]
    Page { pgno: u32 },
}

/// What a merge of some inputs must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    page_size: u32,
    commit: u32,
    min_txid: u64,
    max_txid: u64,
    /// The last input's post-apply checksum (0 when it carries none).
    post_apply: u64,
    /// Page number -> checksum of its newest version, pages `<= commit` only.
    pages: BTreeMap<u32, u64>,
}

/// Reads `inputs` (oldest first, as given to the merge) to the end, checksums verified,
/// and says what their merge must hold; `as_snapshot` for a level-9 merge (min TXID 1).
pub fn expected<R: Read>(inputs: Vec<R>, as_snapshot: bool) -> Result<Expected, CheckError> {
    let mut pages = BTreeMap::new();
    let mut first: Option<Header> = None;
    let mut last: Option<(Header, u64)> = None;
    for (index, r) in inputs.into_iter().enumerate() {
        let err = |source| CheckError::Input { index, source };
        let mut dec = Decoder::new(r).map_err(err)?;
        let h = dec.header().clone();
        let mut buf = vec![0u8; h.page_size.bytes()];
        let mut these = Vec::new();
        while let Some(p) = dec.next_page(&mut buf).map_err(err)? {
            these.push((p.get(), page_checksum(p, &buf)));
        }
        let trailer = dec.finish().map_err(err)?;
        // Only trusted once the file checksum is verified.
        pages.extend(these);
        if first.is_none() {
            first = Some(h.clone());
        }
        last = Some((h, trailer.post_apply_checksum));
    }
    let (first, (last, post_apply)) = first.zip(last).ok_or(CheckError::NoInputs)?;
    let commit = last.commit;
    let page_size = last.page_size;
    pages.retain(|&p, _| p <= commit && !PageNo::new(p).is_ok_and(|p| p.is_lock_page(page_size)));
    Ok(Expected {
        page_size: page_size.get(),
        commit,
        min_txid: if as_snapshot { 1 } else { first.min_txid.get() },
        max_txid: last.max_txid.get(),
        post_apply,
        pages,
    })
}

/// Whether `merged` (the bytes read back from the replica) is what `want` says.
pub fn check<R: Read>(merged: R, want: &Expected) -> Result<(), CheckError> {
    let mut dec = Decoder::new(merged).map_err(CheckError::Merged)?;
    let h = dec.header().clone();
    let mut buf = vec![0u8; h.page_size.bytes()];
    let mut got = BTreeMap::new();
    while let Some(p) = dec.next_page(&mut buf).map_err(CheckError::Merged)? {
        got.insert(p.get(), page_checksum(p, &buf));
    }
    let trailer = dec.finish().map_err(CheckError::Merged)?;
    let header = |what, got: u64, want: u64| {
        if got == want {
            Ok(())
        } else {
            Err(CheckError::Header {
                what,
                got: got.to_string(),
                want: want.to_string(),
            })
        }
    };
    header("page size", h.page_size.get() as u64, want.page_size as u64)?;
    header("commit", h.commit as u64, want.commit as u64)?;
    header("min TXID", h.min_txid.get(), want.min_txid)?;
    header("max TXID", h.max_txid.get(), want.max_txid)?;
    // A file without checksums carries none to compare (Litestream's and ours).
    if !h.no_checksum() {
        header(
            "post-apply checksum",
            trailer.post_apply_checksum,
            want.post_apply,
        )?;
    }
    if got.len() != want.pages.len() || !got.keys().eq(want.pages.keys()) {
        let first = got
            .keys()
            .zip(want.pages.keys())
            .find(|(a, b)| a != b)
            .map(|(a, b)| *a.min(b))
            .or_else(|| {
                let n = got.len().min(want.pages.len());
                got.keys().nth(n).or(want.pages.keys().nth(n)).copied()
            })
            .unwrap_or(0);
        return Err(CheckError::PageSet {
            got: got.len(),
            want: want.pages.len(),
            first,
        });
    }
    for ((pgno, a), b) in got.iter().zip(want.pages.values()) {
        if a != b {
            return Err(CheckError::Page { pgno: *pgno });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx::{Encoder, PageEncoding, PageSize, TxId};

    const PS: u32 = 512;

    /// An LTX file of TXIDs `min..=max` with `pages` as (pgno, fill byte).
    fn file(min: u64, max: u64, commit: u32, pages: &[(u32, u8)]) -> Vec<u8> {
        let h = Header::new(
            PageSize::new(PS).unwrap(),
            commit,
            TxId::new(min).unwrap(),
            TxId::new(max).unwrap(),
            1_700_000_000_000 + max as i64,
        );
        let mut enc = Encoder::new(Vec::new(), &h, PageEncoding::Block).unwrap();
        for &(p, b) in pages {
            enc.write_page(PageNo::new(p).unwrap(), &[b; PS as usize])
                .unwrap();
        }
        enc.finish().unwrap().0
    }

    fn inputs() -> Vec<Vec<u8>> {
        vec![
            file(5, 5, 4, &[(1, 1), (3, 1)]),
            file(6, 7, 4, &[(2, 2), (3, 2)]),
            // Shrinks to 3 pages, rewrites page 1.
            file(8, 8, 3, &[(1, 3)]),
        ]
    }

    fn merged(files: &[Vec<u8>]) -> Vec<u8> {
        let decs = files
            .iter()
            .map(|f| Decoder::new(&f[..]).unwrap())
            .collect();
        ltx::compact(decs, Vec::new(), PageEncoding::Block)
            .unwrap()
            .0
    }

    fn want() -> Expected {
        expected(inputs().iter().map(|f| &f[..]).collect(), false).unwrap()
    }

    #[test]
    fn a_true_merge_passes() {
        let m = merged(&inputs());
        check(&m[..], &want()).unwrap();
        assert_eq!(
            want().pages.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut m = merged(&inputs());
        let mid = m.len() / 2;
        m[mid] ^= 0x40;
        assert!(check(&m[..], &want()).is_err());
    }

    #[test]
    fn wrong_but_well_formed_merges_fail() {
        // (what, the file that claims to be the merge, error start)
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "an old version of page 1",
                file(5, 8, 3, &[(1, 1), (2, 2), (3, 2)]),
                "page 1 of the merged file differs",
            ),
            (
                "page 2 missing",
                file(5, 8, 3, &[(1, 3), (3, 2)]),
                "the merged file has 2 pages, its inputs give 3",
            ),
            (
                "page 4 kept past the commit",
                file(5, 8, 4, &[(1, 3), (2, 2), (3, 2), (4, 9)]),
                "the merged file's commit is 4, its inputs give 3",
            ),
            (
                "the TXID range cut short",
                file(5, 7, 3, &[(1, 3), (2, 2), (3, 2)]),
                "the merged file's max TXID is 7, its inputs give 8",
            ),
        ];
        for (what, m, err) in cases {
            let e = check(&m[..], &want()).unwrap_err().to_string();
            assert!(e.starts_with(err), "{what}: {e}");
        }
    }
}
