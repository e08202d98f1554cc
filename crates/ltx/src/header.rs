//! The 100-byte LTX header and the 16-byte trailer.
//!
//! Owns: their byte layout (big-endian, section 2.2/2.5 of the reference) and the
//! header validation rules. It does not read or write streams and does not decide
//! header values such as WAL coordinates: callers fill those in.

use crate::error::{DecodeError, HeaderError};
use crate::source::{be_u32, be_u64};
use crate::types::{PageSize, TxId};

/// Size of the encoded header.
pub const HEADER_SIZE: usize = 100;
/// Size of the encoded trailer.
pub const TRAILER_SIZE: usize = 16;

/// The fewest bytes one page takes in a file: its 6-byte header, the 4-byte size and a
/// 1-byte LZ4 block (a legacy frame takes more). A file's page count is at most its size
/// over this, so a listed size bounds the pages a restore can expect from it.
pub const MIN_PAGE_BYTES: u64 = 11;

/// The only header flag: the file carries no rolling database checksums.
/// Litestream 0.5 sets it on every file it writes.
pub const FLAG_NO_CHECKSUM: u32 = 0x0000_0002;
const VALID_FLAGS: u32 = FLAG_NO_CHECKSUM;

const MAGIC: &[u8; 4] = b"LTX1";

/// The LTX file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub page_size: PageSize,
    /// Database size in pages after applying this file.
    pub commit: u32,
    pub min_txid: TxId,
    pub max_txid: TxId,
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    pub pre_apply_checksum: u64,
    pub wal_offset: u64,
    pub wal_size: u64,
    pub wal_salt1: u32,
    pub wal_salt2: u32,
    pub node_id: u64,
}

impl Header {
    /// A NoChecksum header with zero WAL coordinates; set the `wal_*` fields afterwards
    /// for an L0 file.
    pub fn new(
        page_size: PageSize,
        commit: u32,
        min_txid: TxId,
        max_txid: TxId,
        timestamp_ms: i64,
    ) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp_ms,
            pre_apply_checksum: 0,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
        }
    }

    /// True when the file is a full snapshot (min TXID 1).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == TxId::ONE
    }

    /// True when the NoChecksum flag is set.
    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }

    /// Checks the rules Litestream's `Header.Validate` applies.
    pub fn validate(&self) -> Result<(), HeaderError> {
        if self.flags & !VALID_FLAGS != 0 {
            return Err(HeaderError::BadFlags(self.flags));
        }
        if self.max_txid < self.min_txid {
            return Err(HeaderError::MaxBelowMin {
                min: self.min_txid.get(),
                max: self.max_txid.get(),
            });
        }
        if self.wal_offset == 0 {
            if self.wal_salt1 != 0 || self.wal_salt2 != 0 {
                return Err(HeaderError::SaltsWithoutWalOffset);
            }
            if self.wal_size != 0 {
                return Err(HeaderError::WalSizeWithoutOffset(self.wal_size));
            }
        }
        if self.pre_apply_checksum != 0 {
            if self.no_checksum() {
                return Err(HeaderError::PreApplyWithNoChecksum(self.pre_apply_checksum));
            }
            if self.is_snapshot() {
                return Err(HeaderError::PreApplyOnSnapshot(self.pre_apply_checksum));
            }
        }
        Ok(())
    }

    /// Encodes the header. The 20 reserved bytes are zero.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.get().to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.get().to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.get().to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }

    /// Parses and validates the first 100 bytes of `b` (which may be longer).
    /// Errors name the offset of the offending field.
    pub fn from_bytes(b: &[u8]) -> Result<Header, DecodeError> {
        if b.len() < HEADER_SIZE {
            return Err(DecodeError::BadHeader {
                offset: b.len() as u64,
                reason: HeaderError::TooShort(b.len()),
            });
        }
        if &b[0..4] != MAGIC {
            return Err(DecodeError::BadMagic {
                offset: 0,
                found: [b[0], b[1], b[2], b[3]],
            });
        }
        let bad = |offset: u64, reason: HeaderError| DecodeError::BadHeader { offset, reason };
        let page_size = be_u32(b, 8);
        let page_size =
            PageSize::new(page_size).map_err(|_| bad(8, HeaderError::BadPageSize(page_size)))?;
        let min_txid = TxId::new(be_u64(b, 16)).map_err(|_| bad(16, HeaderError::ZeroMinTxId))?;
        let max_txid = TxId::new(be_u64(b, 24)).map_err(|_| bad(24, HeaderError::ZeroMaxTxId))?;
        let h = Header {
            flags: be_u32(b, 4),
            page_size,
            commit: be_u32(b, 12),
            min_txid,
            max_txid,
            timestamp_ms: be_u64(b, 32) as i64,
            pre_apply_checksum: be_u64(b, 40),
            wal_offset: be_u64(b, 48),
            wal_size: be_u64(b, 56),
            wal_salt1: be_u32(b, 64),
            wal_salt2: be_u32(b, 68),
            node_id: be_u64(b, 72),
        };
        h.validate().map_err(|reason| {
            let offset = match reason {
                HeaderError::BadFlags(_) => 4,
                HeaderError::MaxBelowMin { .. } => 24,
                HeaderError::SaltsWithoutWalOffset => 64,
                HeaderError::WalSizeWithoutOffset(_) => 56,
                HeaderError::PreApplyWithNoChecksum(_) | HeaderError::PreApplyOnSnapshot(_) => 40,
                _ => 0,
            };
            bad(offset, reason)
        })?;
        Ok(h)
    }
}

/// The 16-byte trailer: post-apply checksum (0 in Litestream files) and the file checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub post_apply_checksum: u64,
    pub file_checksum: u64,
}

impl Trailer {
    pub fn to_bytes(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.to_be_bytes());
        b
    }

    /// Parses the first 16 bytes of `b`; panics if `b` is shorter (callers slice exactly).
    pub(crate) fn from_slice(b: &[u8]) -> Trailer {
        Trailer {
            post_apply_checksum: be_u64(b, 0),
            file_checksum: be_u64(b, 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txid(v: u64) -> TxId {
        TxId::new(v).unwrap()
    }

    /// The L0 file dumped in section 2.9 of the reference (litestream 0.5.17).
    fn reference_header() -> Header {
        let mut h = Header::new(
            PageSize::new(4096).unwrap(),
            7,
            txid(6),
            txid(6),
            1_795_380_029_979,
        );
        h.wal_offset = 32992;
        h.wal_size = 4120;
        h.wal_salt1 = 0xf3e4_f388;
        h.wal_salt2 = 0x7a35_45c7;
        h
    }

    #[test]
    fn reference_hexdump() {
        let b = reference_header().to_bytes();
        let expected_hex = concat!(
            "4c54583100000002000010000000000700000000000000060000000000000006",
            "000001a204fd2a1b000000000000000000000000000080e00000000000001018",
            "f3e4f3887a3545c70000000000000000",
        );
        let mut expected = (0..expected_hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&expected_hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>();
        expected.resize(HEADER_SIZE, 0);
        assert_eq!(b.to_vec(), expected);
        assert_eq!(Header::from_bytes(&b).unwrap(), reference_header());
    }

    #[test]
    fn round_trip_and_longer_slice() {
        let mut h = reference_header();
        h.node_id = 0x0102_0304_0506_0708;
        h.timestamp_ms = -5;
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(b"tail");
        assert_eq!(Header::from_bytes(&b).unwrap(), h);
        assert!(!h.is_snapshot());
        let s = Header::new(PageSize::new(512).unwrap(), 1, TxId::ONE, txid(9), 0);
        assert!(s.is_snapshot());
        assert_eq!(Header::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn flags_zero_is_accepted() {
        let mut h = reference_header();
        h.flags = 0;
        h.pre_apply_checksum = CHECK;
        assert_eq!(Header::from_bytes(&h.to_bytes()).unwrap(), h);
    }
    const CHECK: u64 = 0x8000_0000_0000_1234;

    #[test]
    fn rejects_each_bad_case() {
        type Mutate = fn(&mut [u8; HEADER_SIZE]);
        let cases: &[(&str, Mutate, u64)] = &[
            ("magic", |b| b[0] = b'X', 0),
            ("flags bit 0", |b| b[7] = 0x03, 4),
            ("flags high bit", |b| b[4] = 0x80, 4),
            (
                "page size 1000",
                |b| b[8..12].copy_from_slice(&1000u32.to_be_bytes()),
                8,
            ),
            (
                "page size 0",
                |b| b[8..12].copy_from_slice(&0u32.to_be_bytes()),
                8,
            ),
            (
                "page size 128K",
                |b| b[8..12].copy_from_slice(&131072u32.to_be_bytes()),
                8,
            ),
            (
                "min txid 0",
                |b| b[16..24].copy_from_slice(&0u64.to_be_bytes()),
                16,
            ),
            (
                "max txid 0",
                |b| b[24..32].copy_from_slice(&0u64.to_be_bytes()),
                24,
            ),
            (
                "max < min",
                |b| b[24..32].copy_from_slice(&5u64.to_be_bytes()),
                24,
            ),
            (
                "salt without offset",
                |b| {
                    b[48..64].fill(0);
                    b[64] = 1;
                    b[68..72].fill(0);
                },
                64,
            ),
            (
                "wal size without offset",
                |b| {
                    b[48..56].fill(0);
                    b[64..72].fill(0);
                },
                56,
            ),
            ("pre-apply with NoChecksum", |b| b[47] = 1, 40),
            (
                "pre-apply on snapshot",
                |b| {
                    b[7] = 0;
                    b[16..24].copy_from_slice(&1u64.to_be_bytes());
                    b[40] = 0x80;
                },
                40,
            ),
        ];
        for (name, mutate, offset) in cases {
            let mut b = reference_header().to_bytes();
            mutate(&mut b);
            let e = Header::from_bytes(&b).expect_err(name);
            assert_eq!(e.offset(), *offset, "{name}: {e}");
        }
        let b = reference_header().to_bytes();
        assert!(matches!(
            Header::from_bytes(&b[..99]),
            Err(DecodeError::BadHeader { .. })
        ));
        assert!(matches!(
            Header::from_bytes(&[]),
            Err(DecodeError::BadHeader { .. })
        ));
    }

    #[test]
    fn trailer_round_trip() {
        let t = Trailer {
            post_apply_checksum: 0,
            file_checksum: 0xf3eb_c244_d302_03d0,
        };
        assert_eq!(Trailer::from_slice(&t.to_bytes()), t);
        assert_eq!(
            t.to_bytes()[8..],
            [0xf3, 0xeb, 0xc2, 0x44, 0xd3, 0x02, 0x03, 0xd0]
        );
    }
}
