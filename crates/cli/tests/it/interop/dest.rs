//! Where a test replicates to: a file replica (a directory) or an S3 replica in a real
//! Garage server on loopback. Gives the YAML of the replica for a config both programs
//! read, and looks at what the replica holds through the engine's own storage backends
//! (listing and reading only; the programs under test do the writing).

use std::ops::Range;
use std::sync::Arc;

use engine::storage::file::FileStore;
use engine::storage::s3::S3Store;
use engine::storage::{LtxInfo, ReplicaStore};
use ltx::Level;

use crate::garage::Garage;
use crate::harness::Work;
use crate::s3::s3_options;

pub enum Kind {
    File,
    Garage,
}

pub struct Dest {
    /// `file` or `garage`, for messages.
    pub name: &'static str,
    /// The lines of a `replica:` mapping, indented six spaces.
    pub yaml: String,
    store: Arc<dyn ReplicaStore>,
    rt: tokio::runtime::Runtime,
    /// Kept alive (the server stops on drop).
    _garage: Option<Garage>,
}

impl Dest {
    pub fn new(kind: Kind, w: &Work) -> Dest {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        match kind {
            Kind::File => {
                let dir = w.path("replica");
                Dest {
                    name: "file",
                    yaml: format!("      type: file\n      path: {}\n", dir.display()),
                    store: Arc::new(FileStore::new(dir)),
                    rt,
                    _garage: None,
                }
            }
            Kind::Garage => {
                let g = Garage::start();
                let prefix = "dbs/app";
                Dest {
                    name: "garage",
                    yaml: g.replica_yaml(prefix),
                    store: Arc::new(S3Store::new(s3_options(&g, prefix)).unwrap()),
                    rt,
                    _garage: Some(g),
                }
            }
        }
    }

    pub fn store(&self) -> &dyn ReplicaStore {
        self.store.as_ref()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Every LTX file of every level; `exact` reads creation times as restores do.
    pub fn list_all(&self, exact: bool) -> Vec<LtxInfo> {
        self.block_on(async {
            let mut all = Vec::new();
            for level in Level::all() {
                let files = if exact {
                    self.store.list_exact_times(level).await
                } else {
                    self.store.list(level).await
                };
                all.extend(
                    files.unwrap_or_else(|e| panic!("{}: listing L{level}: {e}", self.name)),
                );
            }
            all
        })
    }

    /// Highest TXID on the replica (0 when empty).
    pub fn max_txid(&self) -> u64 {
        self.list_all(false)
            .iter()
            .map(|i| i.key.max.get())
            .max()
            .unwrap_or(0)
    }

    pub fn get(&self, info: &LtxInfo, range: Option<Range<u64>>) -> Vec<u8> {
        self.block_on(self.store.get(&info.key, range))
            .unwrap_or_else(|e| panic!("{}: reading {}: {e}", self.name, info.key))
            .to_vec()
    }

    /// The header of one file.
    pub fn header(&self, info: &LtxInfo) -> ltx::Header {
        let head = self.get(info, Some(0..ltx::HEADER_SIZE as u64));
        ltx::Header::from_bytes(&head).unwrap_or_else(|e| panic!("{}: {e}", info.key))
    }
}
