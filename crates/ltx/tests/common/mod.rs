//! Helpers shared by the integration tests: building files and reading them back.
#![allow(dead_code)]

use ltx::{DecodeError, Decoder, Encoder, Header, PageEncoding, PageNo, PageSize, Trailer, TxId};

pub fn txid(v: u64) -> TxId {
    TxId::new(v).unwrap()
}

pub fn pgno(v: u32) -> PageNo {
    PageNo::new(v).unwrap()
}

pub fn page_size(v: u32) -> PageSize {
    PageSize::new(v).unwrap()
}

/// How a test page is filled.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    Zeros,
    /// Short repeating pattern: compresses well.
    Pattern(u8),
    /// Pseudo-random bytes: incompressible.
    Noise(u64),
}

pub fn make_page(size: usize, fill: Fill) -> Vec<u8> {
    match fill {
        Fill::Zeros => vec![0; size],
        Fill::Pattern(p) => (0..size)
            .map(|i| (i % (usize::from(p) % 13 + 1)) as u8 ^ p)
            .collect(),
        Fill::Noise(seed) => {
            let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
            (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect()
        }
    }
}

/// Encodes `pages` (ascending) with one encoding per page.
pub fn encode(header: &Header, pages: &[(u32, Vec<u8>, PageEncoding)]) -> (Vec<u8>, Trailer) {
    let first = pages.first().map_or(PageEncoding::Block, |p| p.2);
    let mut enc = Encoder::new(Vec::new(), header, first).unwrap();
    for (n, data, encoding) in pages {
        enc.set_encoding(*encoding);
        enc.write_page(pgno(*n), data).unwrap();
    }
    enc.finish().unwrap()
}

pub type Decoded = (Header, Vec<(u32, Vec<u8>)>, Trailer);

/// Decodes a whole file: header, every page, finish.
pub fn decode_all(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = bytes;
    let mut dec = Decoder::new(&mut r)?;
    let header = dec.header().clone();
    let mut buf = vec![0u8; header.page_size.bytes()];
    let mut pages = Vec::new();
    while let Some(n) = dec.next_page(&mut buf)? {
        pages.push((n.get(), buf.clone()));
    }
    let trailer = dec.finish()?;
    Ok((header, pages, trailer))
}
