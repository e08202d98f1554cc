//! From a database's parameters to the replicas a reader may use, exactly as `restore`
//! finds them: a replica URL resolves its endpoint and credentials through the CLI's own
//! `config::resolve_replica_url` (the configured replica at that location, else the
//! config's top-level keys, else the environment), and becomes a store through the CLI's
//! own `stores::build_store`, decrypting with the replica's `age:` keys (the CLI's
//! `encryption`); without a URL, the database named by the file name is looked up in the
//! config file and all its replicas are candidates (`restore DB_PATH`).
//!
//! Does no I/O beyond reading the config file: stores connect on first use.

use std::path::Path;
use std::sync::Arc;

use engine::restore::run::Candidate;
use engine::storage::file::FileStore;

use crate::config::{self, Config, DbSource};
use crate::encryption::with_age;
use crate::error::VfsError;
use crate::options::Options;
use crate::stores::build_store;

/// The candidates for the database opened as `db_name` with `opts`.
pub fn candidates(db_name: &str, opts: &Options) -> Result<Vec<Candidate>, VfsError> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg: Option<Config> = match &opts.config {
        Some(p) => Some(
            config::load(p, true)
                .map_err(|e| VfsError::Setup(format!("config {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let setup = |e: anyhow::Error| VfsError::Setup(format!("{e:#}"));
    if let Some(url) = &opts.replica {
        if !url.contains("://") {
            // A replica directory, as `restore` takes a path with file://.
            return Ok(vec![(
                url.clone(),
                Arc::new(FileStore::new(std::path::PathBuf::from(url))),
            )]);
        }
        let (kind, age) = config::resolve_replica_url_keys(cfg.as_ref(), url, &env)
            .map_err(|e| VfsError::Setup(e.to_string()))?;
        let name = config::redact_url(url);
        let store = build_store(&kind).map_err(setup)?;
        let store = with_age(store, age.as_ref(), &name).map_err(setup)?;
        return Ok(vec![(name, store)]);
    }
    let Some(cfg) = cfg else {
        return Err(VfsError::Setup(
            "no replica: add replica=URL (or config=FILE naming this database) to the URI, or set SQLITE_REPLICATE_VFS_REPLICA".into(),
        ));
    };
    let want = std::path::absolute(db_name).unwrap_or_else(|_| Path::new(db_name).to_path_buf());
    let db = cfg
        .dbs
        .iter()
        .find(|d| matches!(&d.source, DbSource::Path(p) if std::path::absolute(p).unwrap_or_else(|_| p.clone()) == want))
        .ok_or_else(|| VfsError::Setup(format!("database {db_name} is not in the config")))?;
    db.replicas
        .iter()
        .map(|r| {
            let name = r
                .name
                .clone()
                .unwrap_or_else(|| r.kind.type_name().to_string());
            let store = build_store(&r.kind).map_err(setup)?;
            Ok((
                name.clone(),
                with_age(store, r.age.as_ref(), &name).map_err(setup)?,
            ))
        })
        .collect()
}
