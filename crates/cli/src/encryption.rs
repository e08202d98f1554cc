//! A replica's age keys, from its config to the engine (issue 24).
//!
//! Owns: reading `identity-file` and `recipients-file`, parsing every key with the
//! `age` crate (`engine::storage::age::AgeKeys`), and wrapping the replica's store in
//! `AgeStore`. Errors name the replica, the key (`age.identities[1]`) and, for key
//! files, the path: never key material.
//!
//! Does not: read the `age:` block itself (`config/age.rs`) or encrypt anything.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use engine::storage::age::{AgeKeys, AgeStore};
use engine::storage::ReplicaStore;

use crate::config::AgeConfig;

/// `store`, encrypting with the keys of `age` if given; `replica` names it in errors.
pub fn with_age(
    store: Arc<dyn ReplicaStore>,
    age: Option<&AgeConfig>,
    replica: &str,
) -> anyhow::Result<Arc<dyn ReplicaStore>> {
    let Some(a) = age else {
        return Ok(store);
    };
    let keys = keys(a).map_err(|e| anyhow!("replica {replica}: age.{e}"))?;
    Ok(Arc::new(AgeStore::new(store, keys)))
}

/// The keys of `a`: inline entries first, then key files, each file one entry.
fn keys(a: &AgeConfig) -> Result<AgeKeys, String> {
    let mut ids: Vec<String> = a
        .identities
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    let inline_ids = ids.len();
    for (i, p) in a.identity_files.iter().enumerate() {
        ids.push(read_key_file(p, "identity-file", i)?);
    }
    let mut rs = a.recipients.clone();
    let inline_rs = rs.len();
    for (i, p) in a.recipients_files.iter().enumerate() {
        rs.push(read_key_file(p, "recipients-file", i)?);
    }
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let r_refs: Vec<&str> = rs.iter().map(String::as_str).collect();
    AgeKeys::parse(&id_refs, &r_refs).map_err(|e| {
        let (inline, files, file_key) = match e.list {
            "identities" => (inline_ids, &a.identity_files, "identity-file"),
            _ => (inline_rs, &a.recipients_files, "recipients-file"),
        };
        match e.index.checked_sub(inline) {
            Some(i) => format!("{file_key}[{i}] ({}): {}", files[i].display(), e.what),
            None => e.to_string(),
        }
    })
}

fn read_key_file(p: &Path, key: &str, i: usize) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{key}[{i}]: cannot read {}: {e}", p.display()))
}
