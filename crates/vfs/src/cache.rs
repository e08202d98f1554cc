//! The memory cache of decoded pages, bounded in bytes.
//!
//! Owns: which pages stay in memory. Keys name a page of one LTX file (file key and page
//! number), so an entry stays right across TXIDs: a file's content never changes. Eviction
//! is CLOCK (second chance): a page read since it was last passed over survives one more
//! round, so a scan cannot push out the pages every lookup touches (the B-tree's upper
//! levels) as long as they are read between scans' passes. It does not fetch anything.
//!
//! The bound covers bytes on their way too: the reader reserves a fetch's bytes before it
//! starts ([`PageCache::reserve`]) and releases them once its pages are in
//! ([`PageCache::release`]), so pages plus reservations stay within the bound (issue 22:
//! three prefetched runs in flight took a scan with a 64 MiB cache to 131 MiB of RSS).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use engine::storage::LtxKey;

/// One page of one LTX file.
pub type PageKey = (LtxKey, u32);

struct Entry {
    page: Arc<[u8]>,
    referenced: bool,
}

pub struct PageCache {
    limit_bytes: u64,
    used_bytes: u64,
    /// Bytes of fetches in flight, counted against the bound.
    reserved_bytes: u64,
    map: HashMap<PageKey, Entry>,
    ring: VecDeque<PageKey>,
}

impl PageCache {
    pub fn new(limit_bytes: u64) -> PageCache {
        PageCache {
            limit_bytes,
            used_bytes: 0,
            reserved_bytes: 0,
            map: HashMap::new(),
            ring: VecDeque::new(),
        }
    }

    pub fn get(&mut self, key: &PageKey) -> Option<Arc<[u8]>> {
        let e = self.map.get_mut(key)?;
        e.referenced = true;
        Some(e.page.clone())
    }

    pub fn contains(&self, key: &PageKey) -> bool {
        self.map.contains_key(key)
    }

    /// Adds a page (replacing one with the same key), evicting until the bound holds.
    pub fn insert(&mut self, key: PageKey, page: Arc<[u8]>) {
        let size = page.len() as u64;
        match self.map.insert(
            key,
            Entry {
                page,
                referenced: false,
            },
        ) {
            Some(old) => self.used_bytes -= old.page.len() as u64,
            None => self.ring.push_back(key),
        }
        self.used_bytes += size;
        self.evict(Some(key));
    }

    /// Evicts until pages and reservations fit the bound (`keep`, just inserted, stays
    /// unless it alone is over it).
    fn evict(&mut self, keep: Option<PageKey>) {
        while self.used_bytes + self.reserved_bytes > self.limit_bytes {
            let Some(k) = self.ring.pop_front() else {
                break;
            };
            let Some(e) = self.map.get_mut(&k) else {
                continue;
            };
            if e.referenced && Some(k) != keep {
                e.referenced = false;
                self.ring.push_back(k);
                continue;
            }
            if let Some(e) = self.map.remove(&k) {
                self.used_bytes -= e.page.len() as u64;
            }
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Counts `bytes` of a fetch about to start against the bound, evicting to make room.
    /// `false` (nothing reserved) when reservations would take more than half the bound:
    /// a prefetch then waits, the cache keeps room for the pages it holds.
    pub fn reserve(&mut self, bytes: u64) -> bool {
        if self.reserved_bytes + bytes > self.limit_bytes / 2 {
            return false;
        }
        self.reserved_bytes += bytes;
        self.evict(None);
        true
    }

    /// Counts `bytes` of a fetch (the page asked for must be fetched, whatever the
    /// bound) against the bound, evicting to make room.
    pub fn reserve_anyway(&mut self, bytes: u64) {
        self.reserved_bytes += bytes;
        self.evict(None);
    }

    /// Ends a reservation: the fetch's pages are in, or it was dropped.
    pub fn release(&mut self, bytes: u64) {
        self.reserved_bytes = self.reserved_bytes.saturating_sub(bytes);
    }

    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_bytes
    }

    pub fn pages(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx::{Level, TxId};

    fn key(p: u32) -> PageKey {
        (LtxKey::new(Level::L0, TxId::ONE, TxId::ONE), p)
    }

    #[test]
    fn stays_within_its_bound_and_keeps_pages_read_again() {
        let mut c = PageCache::new(4 * 1024);
        let page = || Arc::<[u8]>::from(vec![0u8; 1024]);
        for p in 1..=4 {
            c.insert(key(p), page());
        }
        assert_eq!(c.used_bytes(), 4096);
        assert!(c.get(&key(1)).is_some()); // read again: gets a second chance
        for p in 5..=7 {
            c.insert(key(p), page());
            assert!(c.used_bytes() <= 4096);
        }
        assert!(
            c.contains(&key(1)),
            "a page read again survives a scan's pass"
        );
        assert!(!c.contains(&key(2)));
        assert_eq!(c.pages(), 4);
    }

    #[test]
    fn reservations_count_against_the_bound() {
        let mut c = PageCache::new(8 * 1024);
        let page = || Arc::<[u8]>::from(vec![0u8; 1024]);
        for p in 1..=8 {
            c.insert(key(p), page());
        }
        assert!(c.reserve(3 * 1024));
        assert_eq!(c.used_bytes(), 5 * 1024, "room made for the fetch");
        assert!(
            !c.reserve(2 * 1024),
            "reservations are held to half the bound"
        );
        c.insert(key(9), page());
        assert_eq!(c.used_bytes() + c.reserved_bytes(), 8 * 1024);
        c.release(3 * 1024);
        c.reserve_anyway(16 * 1024);
        assert_eq!(
            c.used_bytes(),
            0,
            "a fetch over the bound empties the cache"
        );
        c.release(16 * 1024);
        assert_eq!(c.reserved_bytes(), 0);
    }
}
