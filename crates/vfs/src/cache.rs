//! The memory cache of decoded pages, bounded in bytes.
//!
//! Owns: which pages stay in memory. Keys name a page of one LTX file (file key and page
//! number), so an entry stays right across TXIDs: a file's content never changes. Eviction
//! is CLOCK (second chance): a page read since it was last passed over survives one more
//! round, so a scan cannot push out the pages every lookup touches (the B-tree's upper
//! levels) as long as they are read between scans' passes. It does not fetch anything.

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
    map: HashMap<PageKey, Entry>,
    ring: VecDeque<PageKey>,
}

impl PageCache {
    pub fn new(limit_bytes: u64) -> PageCache {
        PageCache {
            limit_bytes,
            used_bytes: 0,
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
        while self.used_bytes > self.limit_bytes {
            let Some(k) = self.ring.pop_front() else {
                break;
            };
            let Some(e) = self.map.get_mut(&k) else {
                continue;
            };
            if e.referenced && k != key {
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
}
