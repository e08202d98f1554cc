//! [`NatsOptions`]: where a NATS replica lives and how to log in, and turning them into a
//! connected client and the bucket's object store handle.
//!
//! Owns: the option checks (bucket name, prefix, TLS pairs), the login precedence
//! (Litestream's: JWT and seed, then a creds file, then an nkey seed, then user and
//! password, then a token), the client settings (reconnects, timeouts), and the
//! classification of connection and bucket-lookup failures. Does not: create the bucket
//! (Litestream does not either: its size, replicas and storage are the operator's choice,
//! `nats object add BUCKET`), or keep secrets anywhere a message could show them.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use async_nats::{ConnectErrorKind, ConnectOptions};

use super::super::StorageError;

/// Litestream's default server when a replica gives none.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A replica in a NATS JetStream object store bucket. `Debug` never shows a secret.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// The server, `nats://host[:port]` (`tls://` for TLS), without credentials; empty is
    /// [`DEFAULT_URL`]. Several servers may be given separated by commas.
    pub url: String,
    /// The object store bucket (JetStream stream `OBJ_<bucket>`); must exist.
    pub bucket: String,
    /// Object name prefix inside the bucket, no leading or trailing `/`; empty (the
    /// default, and the only place Litestream writes) puts `ltx/` at the bucket's root.
    pub prefix: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// An nkey seed (`SU…`): signs the server's nonce.
    pub nkey_seed: Option<String>,
    /// A `.creds` file (user JWT and nkey seed), read when connecting.
    pub creds_path: Option<PathBuf>,
    /// A user JWT, used with `seed`.
    pub jwt: Option<String>,
    pub seed: Option<String>,
    /// Require TLS even for a `nats://` URL.
    pub tls: bool,
    pub root_cas: Vec<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Reconnect attempts after a lost connection; `None` is unlimited (Litestream's -1).
    pub max_reconnects: Option<usize>,
    /// Wait between reconnect attempts (Litestream's default: 2 s).
    pub reconnect_wait: Duration,
    /// Connect timeout, and the timeout of each request (Litestream's default: 10 s).
    pub timeout: Duration,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("token", &set(&self.token))
            .field("nkey_seed", &set(&self.nkey_seed))
            .field("creds_path", &self.creds_path)
            .field("jwt", &set(&self.jwt))
            .field("seed", &set(&self.seed))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl NatsOptions {
    /// Options for `bucket` on the server at `url`, with Litestream's client defaults.
    pub fn new(url: &str, bucket: &str) -> NatsOptions {
        NatsOptions {
            url: url.to_string(),
            bucket: bucket.to_string(),
            reconnect_wait: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    /// The server URL in use.
    pub fn server(&self) -> &str {
        if self.url.is_empty() {
            DEFAULT_URL
        } else {
            &self.url
        }
    }

    /// Where the replica lives, for logs and errors: `nats://host:port/bucket[/prefix]`,
    /// never a credential.
    pub fn location(&self) -> String {
        let server = self.server().trim_end_matches('/');
        match self.prefix.as_str() {
            "" => format!("{server}/{}", self.bucket),
            p => format!("{server}/{}/{p}", self.bucket),
        }
    }

    /// Every secret the options hold, to scrub from error texts.
    pub(super) fn secrets(&self) -> Vec<String> {
        [
            &self.password,
            &self.token,
            &self.nkey_seed,
            &self.jwt,
            &self.seed,
        ]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect()
    }

    /// `Permanent` naming what is wrong, before any connection.
    pub(super) fn check(&self) -> Result<(), StorageError> {
        let bad = |what: &str, detail: String| {
            Err(StorageError::permanent(self.location(), what, detail))
        };
        let b = &self.bucket;
        if b.is_empty()
            || !b
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(
                "bucket",
                format!("{b:?} is not an object store bucket name (letters, digits, `_`, `-`)"),
            );
        }
        let p = &self.prefix;
        if !p.is_empty() && p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return bad(
                "path",
                format!("{p:?} is not a relative object name prefix"),
            );
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return bad(
                "client-cert",
                "client-cert and client-key must both be given for mutual TLS".into(),
            );
        }
        if self.jwt.is_some() != self.seed.is_some() && self.creds_path.is_none() {
            return bad("jwt", "jwt and seed must be given together".into());
        }
        Ok(())
    }

    /// The client settings and login.
    async fn connect_options(&self) -> Result<ConnectOptions, StorageError> {
        let mut o = ConnectOptions::new()
            .name("sqlite-replicate")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .max_reconnects(self.max_reconnects);
        let wait = self.reconnect_wait;
        o = o.reconnect_delay_callback(move |_| wait);
        o = match (&self.jwt, &self.seed, &self.creds_path) {
            (Some(jwt), Some(seed), _) => o
                .credentials(&creds_text(jwt, seed))
                .map_err(|_| self.auth_err("jwt", "jwt or seed is malformed"))?,
            (_, _, Some(path)) => o.credentials_file(path).await.map_err(|e| {
                StorageError::permanent(
                    self.location(),
                    "creds",
                    format!("cannot read the creds file {}: {e}", path.display()),
                )
            })?,
            _ => match (&self.nkey_seed, &self.username, &self.password, &self.token) {
                (Some(seed), ..) => o.nkey(seed.clone()),
                (None, Some(u), Some(p), _) => o.user_and_password(u.clone(), p.clone()),
                (None, _, _, Some(t)) => o.token(t.clone()),
                _ => o,
            },
        };
        if self.tls {
            o = o.require_tls(true);
        }
        for ca in &self.root_cas {
            o = o.add_root_certificates(ca.clone());
        }
        if let (Some(c), Some(k)) = (&self.client_cert, &self.client_key) {
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        Ok(o)
    }

    fn auth_err(&self, what: &str, detail: &str) -> StorageError {
        StorageError::permission_denied(self.location(), what, detail)
    }

    /// Connects and looks the bucket up: one connection (with its handshake), then one
    /// JetStream request for the bucket's stream.
    pub(super) async fn open(&self) -> Result<ObjectStore, StorageError> {
        let o = self.connect_options().await?;
        let client = o.connect(self.server()).await.map_err(|e| {
            let detail = super::scrub(&e.to_string(), &self.secrets());
            match e.kind() {
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    StorageError::permission_denied(self.location(), "login", detail)
                }
                ConnectErrorKind::ServerParse | ConnectErrorKind::Tls => {
                    StorageError::permanent(self.location(), "connect", detail)
                }
                _ => StorageError::transient(self.location(), "connect", detail),
            }
        })?;
        let js = async_nats::jetstream::new(client);
        js.get_object_store(&self.bucket).await.map_err(|e| {
            let text = super::error_chain(&e, &self.secrets());
            let what = format!("bucket {}", self.bucket);
            if text.contains("stream not found") {
                StorageError::not_found(self.location(), what).with_detail(format!(
                    "no object store bucket {:?} on the server; create it (`nats object add {}`)",
                    self.bucket, self.bucket
                ))
            } else {
                super::classify_text(&self.location(), &what, text)
            }
        })
    }
}

/// The text of a `.creds` file holding `jwt` and `seed`, for the client's parser.
fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}
