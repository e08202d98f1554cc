//! How large an LTX file can be.
//!
//! Owns: the size bounds a reader checks a listed or streamed file against before it
//! trusts it (a hostile store cannot make us read or allocate more than the header
//! allows). Built from the header, index and payload encodings' own size constants.

use crate::header::{Header, HEADER_SIZE};
use crate::index::{INDEX_FOOTER_SIZE, MAX_ENTRY_LEN};
use crate::lz4::{max_payload_size, PAGE_HEADER_SIZE};
use crate::types::PageSize;

/// The most bytes a file whose header says `page_size` and `commit` can take: the header,
/// at most `commit` pages (page numbers rise and none exceeds `commit`), each at most its
/// header and the largest compressed payload of a page, the end-of-pages marker, an index
/// entry per page, the index terminator and footer, and the trailer. The decoder never
/// reads further, so a store listing a larger size for such a file lies about it (or holds
/// trailing bytes).
pub fn max_file_bytes(page_size: PageSize, commit: u32) -> u64 {
    let per_page = (PAGE_HEADER_SIZE + max_payload_size(page_size.bytes()) + MAX_ENTRY_LEN) as u64;
    let fixed = (HEADER_SIZE + PAGE_HEADER_SIZE + 10 + INDEX_FOOTER_SIZE) as u64;
    u64::from(commit)
        .checked_mul(per_page)
        .and_then(|p| p.checked_add(fixed))
        .unwrap_or(u64::MAX)
}

/// The most bytes any LTX file can take: [`max_file_bytes`] of the largest page size and
/// page count (about 2^48). A listed size above it cannot be an LTX file.
pub fn max_any_file_bytes() -> u64 {
    max_file_bytes(PageSize::new(PageSize::MAX).expect("valid"), u32::MAX)
}

impl Header {
    /// The most bytes a file with this header can take (see [`max_file_bytes`]).
    pub fn max_file_bytes(&self) -> u64 {
        max_file_bytes(self.page_size, self.commit)
    }
}
