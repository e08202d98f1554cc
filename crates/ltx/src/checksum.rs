//! CRC-64/ISO checksums used by LTX.
//!
//! Owns: the CRC-64/ISO function (Go's `crc64.ISO` table: reflected polynomial,
//! init and xorout all ones), a streaming hasher for the file checksum, and the
//! optional rolling database checksum (`page_checksum`, [`DbChecksum`]).
//! It does not decide which bytes go into the file checksum: the encoder and
//! decoder feed it in the order the format defines.

use crc_fast::{CrcAlgorithm, Digest};

use crate::types::{PageNo, PageSize};

/// Bit 63 is set on every stored LTX checksum, so 0 can mean "no checksum".
pub const CHECKSUM_FLAG: u64 = 1 << 63;

// crc-fast folds with carry-less multiplication (PCLMULQDQ/PMULL) where the CPU has it,
// falling back to tables elsewhere: the file checksum runs over every uncompressed page
// byte, so it bounds how fast a restore can go.
const ALGORITHM: CrcAlgorithm = CrcAlgorithm::Crc64GoIso;

/// CRC-64/ISO (Go's `crc64.Checksum(data, crc64.MakeTable(crc64.ISO))`) of `data`.
pub fn crc64_iso(data: &[u8]) -> u64 {
    crc_fast::checksum(ALGORITHM, data)
}

/// Streaming CRC-64/ISO.
#[derive(Clone)]
pub struct Crc64Hasher {
    digest: Digest,
}

impl Crc64Hasher {
    pub fn new() -> Crc64Hasher {
        Crc64Hasher {
            digest: Digest::new(ALGORITHM),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The CRC of everything fed so far (the hasher can keep going).
    pub fn value(&self) -> u64 {
        self.digest.finalize()
    }

    /// The CRC with bit 63 set, as LTX stores it.
    pub fn ltx_value(&self) -> u64 {
        self.value() | CHECKSUM_FLAG
    }
}

impl Default for Crc64Hasher {
    fn default() -> Self {
        Crc64Hasher::new()
    }
}

impl std::fmt::Debug for Crc64Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64Hasher({:#018x})", self.value())
    }
}

/// Checksum of one database page: `(1<<63) | crc64iso(pgno as BE u32 ‖ page)`.
pub fn page_checksum(pgno: PageNo, data: &[u8]) -> u64 {
    let mut h = Crc64Hasher::new();
    h.update(&pgno.get().to_be_bytes());
    h.update(data);
    h.ltx_value()
}

/// The rolling database checksum: XOR of the page checksums of every page except
/// the lock page, reported with bit 63 set. Litestream 0.5 never stores it (it
/// writes NoChecksum files), but it is handy for verifying a restored database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbChecksum {
    lock_page: PageNo,
    acc: u64,
}

impl DbChecksum {
    pub fn new(page_size: PageSize) -> DbChecksum {
        DbChecksum {
            lock_page: page_size.lock_page(),
            acc: 0,
        }
    }

    /// Adds a page. The lock page is ignored.
    pub fn add(&mut self, pgno: PageNo, data: &[u8]) {
        if pgno != self.lock_page {
            self.acc ^= page_checksum(pgno, data);
        }
    }

    /// Removes a page previously added (XOR is its own inverse), e.g. the old
    /// version of a page about to be overwritten.
    pub fn remove(&mut self, pgno: PageNo, data: &[u8]) {
        self.add(pgno, data);
    }

    pub fn value(&self) -> u64 {
        self.acc | CHECKSUM_FLAG
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_go_iso_known_answer() {
        assert_eq!(crc64_iso(b"123456789"), 0xb909_56c7_75a4_1001);
        let mut h = Crc64Hasher::new();
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(h.value(), 0xb909_56c7_75a4_1001);
        assert_eq!(h.ltx_value(), 0xb909_56c7_75a4_1001 | CHECKSUM_FLAG);
        assert_eq!(crc64_iso(b""), 0);
    }

    /// crc-fast against the plain table implementation of the same CRC, over lengths
    /// around its SIMD block sizes and arbitrary split points.
    #[test]
    fn matches_reference_table_crc() {
        let reference = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_GO_ISO);
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [
            0, 1, 7, 15, 16, 17, 31, 63, 64, 65, 127, 128, 255, 256, 4096, 4102, 70_000,
        ] {
            let d = &data[..len];
            assert_eq!(crc64_iso(d), reference.checksum(d), "len {len}");
            for split in [0, 1.min(len), len / 3, len / 2, len.saturating_sub(5)] {
                let mut h = Crc64Hasher::new();
                h.update(&d[..split]);
                let mid = h.value();
                h.update(&d[split..]);
                assert_eq!(h.value(), reference.checksum(d), "len {len} split {split}");
                assert_eq!(mid, reference.checksum(&d[..split]));
            }
        }
    }

    #[test]
    fn page_checksum_covers_pgno_then_data() {
        let page = vec![7u8; 512];
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&page);
        assert_eq!(
            page_checksum(PageNo::new(3).unwrap(), &page),
            crc64_iso(&buf) | CHECKSUM_FLAG
        );
        assert_ne!(
            page_checksum(PageNo::new(3).unwrap(), &page),
            page_checksum(PageNo::new(4).unwrap(), &page)
        );
    }

    #[test]
    fn db_checksum_add_remove_and_lock_page() {
        let ps = PageSize::new(512).unwrap();
        let mut c = DbChecksum::new(ps);
        assert_eq!(c.value(), CHECKSUM_FLAG);
        let a = vec![1u8; 512];
        let b = vec![2u8; 512];
        c.add(PageNo::new(1).unwrap(), &a);
        let one = c.value();
        c.add(PageNo::new(2).unwrap(), &b);
        c.remove(PageNo::new(2).unwrap(), &b);
        assert_eq!(c.value(), one);
        c.add(ps.lock_page(), &b);
        assert_eq!(c.value(), one, "lock page must not count");
    }
}
