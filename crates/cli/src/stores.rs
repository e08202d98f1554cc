//! From a replica's config to its storage backend: the one mapping of config keys to each
//! backend's options, shared by every command (through `setup`) and by the VFS extension
//! (`crates/vfs`, which compiles this file and `config/` from here), so a replica opened
//! through the VFS reaches the same endpoint with the same credentials as `restore`.
//!
//! Depends only on `config` (of this crate), `engine` and `anyhow`.

use std::sync::Arc;

use anyhow::{bail, Context};
use engine::storage::file::FileStore;
use engine::storage::ReplicaStore;

use crate::config::ReplicaKind;

/// Builds the backend for a replica.
pub fn build_store(kind: &ReplicaKind) -> anyhow::Result<Arc<dyn ReplicaStore>> {
    match kind {
        ReplicaKind::File { path } => Ok(Arc::new(FileStore::new(path.clone()))),
        ReplicaKind::S3(c) => Ok(Arc::new(engine::storage::s3::S3Store::new(s3_options(c)?)?)),
        ReplicaKind::Abs(c) => Ok(Arc::new(engine::storage::abs::AbsStore::new(abs_options(
            c,
        ))?)),
        ReplicaKind::Sftp(c) => Ok(Arc::new(engine::storage::sftp::SftpStore::new(
            sftp_options(c)?,
        )?)),
        ReplicaKind::Gcs(c) => Ok(Arc::new(engine::storage::gcs::GcsStore::new(gcs_options(
            c,
        ))?)),
        ReplicaKind::WebDav(c) => Ok(Arc::new(engine::storage::webdav::WebDavStore::new(
            engine::storage::webdav::WebDavOptions {
                url: c.url.clone(),
                username: c.username.clone(),
                password: c.password.as_ref().map(|p| p.expose().to_string()),
                path: c.path.clone(),
            },
        )?)),
        ReplicaKind::Nats(c) => Ok(Arc::new(engine::storage::nats::NatsStore::new(
            nats_options(c),
        )?)),
    }
}

/// The NATS backend's options from a replica's config (Litestream's client defaults
/// where a key is not given: unlimited reconnects 2 s apart, a 10 s timeout).
fn nats_options(c: &crate::config::NatsConfig) -> engine::storage::nats::NatsOptions {
    let expose = |s: &Option<crate::config::Secret>| s.as_ref().map(|s| s.expose().to_string());
    let mut o =
        engine::storage::nats::NatsOptions::new(c.server.as_deref().unwrap_or_default(), &c.bucket);
    o.prefix = c.path.clone();
    o.username = c.username.clone();
    o.password = expose(&c.password);
    o.token = expose(&c.token);
    o.nkey_seed = expose(&c.nkey);
    o.creds_path = c.creds.clone();
    o.jwt = expose(&c.jwt);
    o.seed = expose(&c.seed);
    o.tls = c.tls;
    o.root_cas = c.root_cas.clone();
    o.client_cert = c.client_cert.clone();
    o.client_key = c.client_key.clone();
    o.max_reconnects = c.max_reconnects.map(|n| n as usize);
    if let Some(w) = c.reconnect_wait {
        o.reconnect_wait = w;
    }
    if let Some(t) = c.timeout {
        o.timeout = t;
    }
    o
}

/// The SFTP backend's options from a replica's config (`host` may carry the port).
pub(crate) fn sftp_options(
    c: &crate::config::SftpConfig,
) -> anyhow::Result<engine::storage::sftp::SftpOptions> {
    let kind = ReplicaKind::Sftp(c.clone());
    let (host, port) = engine::storage::sftp::split_host_port(&c.host)
        .map_err(|e| anyhow::anyhow!("{}: host: {e}", kind.describe()))?;
    let mut o = engine::storage::sftp::SftpOptions::new(&host, port, &c.user, &c.path);
    o.password = c.password.as_ref().map(|s| s.expose().to_string());
    o.key_path = c.key_path.clone();
    o.key_passphrase = c.key_passphrase.as_ref().map(|s| s.expose().to_string());
    o.host_key = c.host_key.clone();
    if c.concurrent_writes == Some(false) {
        o.write_concurrency = 1;
    }
    Ok(o)
}

/// The GCS backend's options from a replica's config; credentials come from Google's
/// application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, the
/// metadata server), as Litestream's. `STORAGE_EMULATOR_HOST` (`host:port` or a URL), as
/// Google's client libraries (so Litestream) read it, sends every request there unsigned.
fn gcs_options(c: &crate::config::GcsConfig) -> engine::storage::gcs::GcsOptions {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let emulator = env("STORAGE_EMULATOR_HOST");
    engine::storage::gcs::GcsOptions {
        bucket: c.bucket.clone(),
        prefix: c.path.clone(),
        application_credentials: env("GOOGLE_APPLICATION_CREDENTIALS")
            .map(std::path::PathBuf::from),
        anonymous: emulator.is_some(),
        endpoint: emulator
            .as_deref()
            .map(engine::storage::gcs::emulator_endpoint),
    }
}

/// The S3 backend's options from a replica's config. Credentials and endpoint missing from
/// the config come from the environment here too, because `restore s3://...` parses a bare
/// URL without them; for configured replicas this finds them already filled.
fn s3_options(c: &crate::config::S3Config) -> anyhow::Result<engine::storage::s3::S3Options> {
    let mut kind = ReplicaKind::S3(c.clone());
    kind.apply_env_defaults(&|k| std::env::var(k).ok());
    let shown = kind.describe();
    let ReplicaKind::S3(c) = kind else {
        unreachable!("still s3")
    };
    if let Some(alg) = &c.sse_customer_algorithm {
        if !alg.eq_ignore_ascii_case("AES256") {
            bail!("{shown}: sse-customer-algorithm {alg:?} is not supported (AES256 only)");
        }
    }
    let sse_customer_key = match (&c.sse_customer_key, &c.sse_customer_key_path) {
        (Some(k), _) => Some(k.expose().to_string()),
        (None, Some(p)) => {
            let raw = std::fs::read(p).with_context(|| {
                format!("{shown}: reading sse-customer-key-path {}", p.display())
            })?;
            let key = engine::storage::s3::sse_customer_key_base64(&raw)
                .map_err(|e| anyhow::anyhow!("{shown}: {}: {e}", p.display()))?;
            Some(key)
        }
        (None, None) => None,
    };
    Ok(engine::storage::s3::S3Options {
        bucket: c.bucket.clone(),
        prefix: c.path.clone(),
        endpoint: c.endpoint.clone(),
        region: c.region.clone(),
        force_path_style: c.force_path_style,
        access_key_id: c.access_key_id.as_ref().map(|s| s.expose().to_string()),
        secret_access_key: c.secret_access_key.as_ref().map(|s| s.expose().to_string()),
        skip_verify: c.skip_verify,
        sse_kms_key_id: c.sse_kms_key_id.clone(),
        sse_customer_key,
        part_size: c.part_size,
        concurrency: c.concurrency.map(|n| n as usize),
        storage_class: c.storage_class.clone(),
        sign_payload: c.sign_payload,
        require_content_md5: c.require_content_md5,
    })
}

/// The ABS backend's options from a replica's config. The account key and SAS token
/// missing from the config come from `LITESTREAM_AZURE_*` here too, because
/// `restore abs://...` parses a bare URL without them.
fn abs_options(c: &crate::config::AbsConfig) -> engine::storage::abs::AbsOptions {
    let mut kind = ReplicaKind::Abs(c.clone());
    kind.apply_env_defaults(&|k| std::env::var(k).ok());
    let ReplicaKind::Abs(c) = kind else {
        unreachable!("still abs")
    };
    engine::storage::abs::AbsOptions {
        account_name: c.account_name.clone().unwrap_or_default(),
        account_key: c.account_key.as_ref().map(|s| s.expose().to_string()),
        sas_token: c.sas_token.as_ref().map(|s| s.expose().to_string()),
        container: c.bucket.clone(),
        prefix: c.path.clone(),
        endpoint: c.endpoint.clone(),
    }
}
