//! `watch: true` directory entries while `replicate` runs: every change that
//! `engine::runtime::discover` reports becomes a run added to, or removed from, the
//! runtime.
//!
//! Owns: turning a discovered file into its run exactly as the start-up scan does
//! (`config::expand_dir_db`, then `setup::db_run`: same replica paths, same meta
//! directory), and the log line for each change. Does not: decide which files are
//! databases (`discover`) or how a run starts and stops (`Runtime`).

use std::collections::BTreeSet;
use std::sync::Arc;

use engine::runtime::discover::{self, DirSpec, Found};
use engine::runtime::{DbRun, RegistryError, Runtime};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{self, Config, DbSource};
use crate::setup;

/// Starts a watch for every `watch: true` directory entry of `cfg`; `runs` are the
/// databases the start-up scan found. Returns how many directories are watched.
pub fn spawn(
    cfg: &Config,
    runtime: &Runtime,
    runs: &[DbRun],
    shutdown: &watch::Receiver<bool>,
) -> usize {
    let mut watched = 0;
    let shared = Arc::new(cfg.clone());
    for entry in &cfg.dbs {
        let DbSource::Dir {
            dir,
            pattern,
            recursive,
            watch: true,
        } = &entry.source
        else {
            continue;
        };
        let pattern = pattern.clone();
        let spec = DirSpec {
            dir: dir.clone(),
            recursive: *recursive,
            matches: Arc::new(move |name: &str| config::glob_match(&pattern, name)),
        };
        let known: BTreeSet<_> = runs
            .iter()
            .map(|r| r.opts.path.clone())
            .filter(|p| spec.is_candidate(p))
            .collect();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(discover::watch_dir(spec, known, tx, shutdown.clone()));
        let (cfg, entry, runtime) = (shared.clone(), entry.clone(), runtime.clone());
        tokio::spawn(async move {
            while let Some(found) = rx.recv().await {
                match found {
                    Found::Appeared(path) => {
                        let run = config::expand_dir_db(&entry, &path)
                            .map_err(anyhow::Error::from)
                            .and_then(|db| setup::db_run(&cfg, &path, &db));
                        match run.map(|r| runtime.add(r)) {
                            Ok(Ok(())) => {
                                info!(db = %path.display(), "new database in a watched directory; replicating")
                            }
                            // Registered over the control socket already.
                            Ok(Err(RegistryError::AlreadyRegistered { .. })) => {}
                            Ok(Err(e)) => {
                                warn!(db = %path.display(), error = %e, "new database in a watched directory not started")
                            }
                            Err(e) => {
                                warn!(db = %path.display(), error = %crate::error_text(&e), "new database in a watched directory not started")
                            }
                        }
                    }
                    Found::Vanished(path) => {
                        let name = path.display().to_string();
                        match runtime.detach(&name) {
                            Ok(d) => {
                                info!(db = %name, "database deleted from a watched directory; final sync, then stop");
                                // Its final sync must not hold up the next change.
                                tokio::spawn(async move {
                                    match d.finish().await {
                                        Ok(r) => match r.outcome {
                                            Ok(()) => {
                                                info!(db = %name, "stopped replicating a deleted database")
                                            }
                                            Err(e) => {
                                                warn!(db = %name, error = %e, "stopped replicating a deleted database; final sync incomplete")
                                            }
                                        },
                                        Err(e) => {
                                            warn!(db = %name, error = %e, "stopping a deleted database failed")
                                        }
                                    }
                                });
                            }
                            // Unregistered over the control socket already.
                            Err(RegistryError::NotRegistered { .. }) => {}
                            Err(e) => warn!(db = %name, error = %e, "deleted database not stopped"),
                        }
                    }
                }
            }
        });
        watched += 1;
    }
    watched
}
