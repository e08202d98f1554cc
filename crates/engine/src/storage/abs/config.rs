//! The ABS backend's configuration: [`AbsOptions`] checked and turned into a client.
//!
//! Owns: which credential is used (account key, else SAS token, else the client's own
//! chain of managed and workload identity), the endpoint (Azure's
//! `https://<account>.blob.core.windows.net` unless given, e.g. Azurite's
//! `http://127.0.0.1:10000/<account>`), and which of the shared object-store settings
//! Azure uses (layout, metadata key, error dialect, block size, a HEAD before ranged gets).
//! Reads no environment variable: the CLI fills keys from `LITESTREAM_AZURE_*`. Makes
//! no request.

use std::fmt;

use std::sync::Arc;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::Attributes;

use crate::storage::objstore::{
    client_options, parse_prefix, plain_http_warning, retry_config, trim_endpoint,
    ObjectStoreReplica, SharedHttp,
};
use crate::storage::objstore_error::scrub;
use crate::storage::{Layout, StorageError};

/// Files larger than this go up as blocks of this size (one Put Blob is limited, and a
/// failed block is cheaper to resend than a whole file).
const BLOCK_SIZE_BYTES: usize = 16 * 1024 * 1024;

/// Blocks of one file in flight at once.
const BLOCK_CONCURRENCY: usize = 4;

/// Where and how to reach a container. Secrets never print (`Debug` shows `***`).
#[derive(Clone, Default)]
pub struct AbsOptions {
    pub account_name: String,
    /// Shared key (base64), as the portal shows it.
    pub account_key: Option<String>,
    /// A SAS token (`sv=...&sig=...`, with or without the leading `?`); used when no
    /// account key is given.
    pub sas_token: Option<String>,
    pub container: String,
    /// Blob name prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// The account's blob service URL with a scheme; `None` is Azure's public cloud.
    pub endpoint: Option<String>,
}

impl fmt::Debug for AbsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("AbsOptions")
            .field("account_name", &self.account_name)
            .field("account_key", &redacted(&self.account_key))
            .field("sas_token", &redacted(&self.sas_token))
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(display_endpoint))
            .finish()
    }
}

/// Checks `opts` and builds the client with Azure's layout, metadata key, error dialect and
/// block size. Errors are `Permanent` and name the replica.
pub(super) fn build(opts: AbsOptions) -> Result<ObjectStoreReplica, StorageError> {
    let prefix_str = opts.prefix.trim_matches('/').to_string();
    let endpoint = trim_endpoint(opts.endpoint.as_deref());
    let shown_endpoint = match &endpoint {
        Some(e) => display_endpoint(e),
        None => format!("https://{}.blob.core.windows.net", opts.account_name),
    };
    let location = format!("abs://{}/{} ({shown_endpoint})", opts.container, prefix_str);
    let bad =
        |detail: String| StorageError::permanent(location.clone(), "replica configuration", detail);

    if opts.account_name.is_empty() {
        return Err(bad("no account-name given".into()));
    }
    if opts.container.is_empty() {
        return Err(bad("no bucket (container) given".into()));
    }
    let prefix = parse_prefix(&prefix_str).map_err(bad)?;

    let mut b = MicrosoftAzureBuilder::new()
        .with_account(&opts.account_name)
        .with_container_name(&opts.container);
    let mut allow_http = false;
    if let Some(e) = &endpoint {
        if !e.starts_with("http://") && !e.starts_with("https://") {
            return Err(bad(format!(
                "endpoint {:?} needs http:// or https://",
                display_endpoint(e)
            )));
        }
        allow_http = e.starts_with("http://");
        b = b.with_endpoint(e.clone());
    }

    let mut secrets = Vec::new();
    let mut sent: Vec<&str> = Vec::new();
    let key = opts.account_key.filter(|k| !k.is_empty());
    let sas = opts.sas_token.filter(|s| !s.is_empty());
    match (key, sas) {
        (Some(k), _) => {
            secrets.push(k.clone());
            sent.push("signed (replayable) requests");
            b = b.with_access_key(k);
        }
        (None, Some(s)) => {
            let pairs = sas_pairs(&s);
            if !pairs.iter().any(|(k, _)| k == "sig") {
                return Err(bad("sas-token has no `sig` parameter".into()));
            }
            secrets.extend(
                pairs
                    .iter()
                    .map(|(_, v)| v.clone())
                    .filter(|v| v.len() >= 16),
            );
            secrets.push(s.clone());
            sent.push("the SAS token");
            // The client percent-decodes the token and encodes each value again.
            b = b.with_config(AzureConfigKey::SasKey, s);
        }
        (None, None) => {
            // The client would fall back to the Azure instance metadata service, which a
            // custom endpoint almost never goes with: say so now rather than after its
            // timeouts.
            if endpoint.is_some() {
                return Err(bad(
                    "no credentials: set account-key or sas-token (or LITESTREAM_AZURE_ACCOUNT_KEY or LITESTREAM_AZURE_SAS_TOKEN)"
                        .into(),
                ));
            }
        }
    }

    if let Some(w) = plain_http_warning(endpoint.as_deref(), &sent) {
        tracing::warn!(replica = %location, "{w}");
    }
    b = b
        .with_client_options(client_options(allow_http))
        .with_http_connector(SharedHttp::new(format!("abs|{allow_http}"), None))
        .with_retry(retry_config());

    let store = b
        .build()
        .map_err(|e| bad(scrub(&e.to_string(), &secrets)))?;
    Ok(ObjectStoreReplica {
        store: Arc::new(store),
        container: opts.container,
        prefix,
        location,
        secrets,
        layout: Layout::LtxDir,
        timestamp_key: super::TIMESTAMP_METADATA,
        dialect: &super::error::DIALECT,
        part_size_bytes: BLOCK_SIZE_BYTES,
        part_concurrency: BLOCK_CONCURRENCY,
        base_attributes: Attributes::new(),
        // Azure answers a range past the end with 416, so every ranged get checks first.
        head_before_range: true,
    })
}

/// A SAS token's query parameters, as given (still percent-encoded), for checking it and
/// for scrubbing its signature from messages.
fn sas_pairs(sas: &str) -> Vec<(String, String)> {
    sas.trim()
        .trim_start_matches('?')
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// An endpoint for messages: scheme, host, port and path, without user info or query.
fn display_endpoint(e: &str) -> String {
    let (scheme, rest) = e.split_once("://").unwrap_or(("", e));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = match rest.split_once('/') {
        Some((auth, path)) => format!("{}/{path}", auth.rsplit('@').next().unwrap_or(auth)),
        None => rest.rsplit('@').next().unwrap_or(rest).to_string(),
    };
    let rest = rest.trim_end_matches('/');
    if scheme.is_empty() {
        rest.to_string()
    } else {
        format!("{scheme}://{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn base() -> AbsOptions {
        AbsOptions {
            account_name: "devstoreaccount1".into(),
            account_key: Some(KEY.into()),
            sas_token: None,
            container: "c".into(),
            prefix: "/db/x/".into(),
            endpoint: Some("http://127.0.0.1:10000/devstoreaccount1/".into()),
        }
    }

    #[test]
    fn options_are_checked_without_io() {
        let c = build(base()).unwrap();
        assert_eq!(
            c.location,
            "abs://c/db/x (http://127.0.0.1:10000/devstoreaccount1)"
        );
        assert_eq!(c.prefix.as_ref().map(|p| p.as_ref()), Some("db/x"));
        assert_eq!(c.secrets, [KEY]);
        assert!(!format!("{:?}", base()).contains(KEY));

        let c = build(AbsOptions {
            endpoint: None,
            prefix: String::new(),
            ..base()
        })
        .unwrap();
        assert_eq!(
            (c.location.as_str(), c.prefix),
            (
                "abs://c/ (https://devstoreaccount1.blob.core.windows.net)",
                None
            )
        );

        let err = |o: AbsOptions| build(o).unwrap_err().to_string();
        assert!(err(AbsOptions {
            account_key: None,
            ..base()
        })
        .contains("no credentials"));
        assert!(err(AbsOptions {
            account_name: String::new(),
            ..base()
        })
        .contains("account-name"));
        assert!(err(AbsOptions {
            endpoint: Some("127.0.0.1:10000".into()),
            ..base()
        })
        .contains("http://"));
        assert!(err(AbsOptions {
            account_key: None,
            sas_token: Some("sv=2020&sp=rw".into()),
            ..base()
        })
        .contains("sig"));

        let sas = "?sv=2022-11-02&ss=b&sig=abcdefghijklmnop%2Bqrs%3D";
        let c = build(AbsOptions {
            account_key: None,
            sas_token: Some(sas.into()),
            ..base()
        })
        .unwrap();
        assert!(c.secrets.iter().any(|s| s == "abcdefghijklmnop%2Bqrs%3D"));
    }

    #[test]
    fn built_replicas_never_print_their_secrets() {
        let c = build(base()).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(KEY) && dbg.contains("abs://c/db/x"), "{dbg}");
        let sig = "abcdefghijklmnop%2Bqrs%3D";
        let c = build(AbsOptions {
            account_key: None,
            sas_token: Some(format!("?sv=2022-11-02&ss=b&sig={sig}")),
            ..base()
        })
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(sig), "{dbg}");
    }

    #[test]
    fn sas_and_endpoints_for_messages() {
        assert_eq!(
            sas_pairs("?a=1&b=x%3D&c"),
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x%3D".to_string()),
                ("c".to_string(), String::new())
            ]
        );
        assert_eq!(
            display_endpoint("https://u:p@acct.blob.core.windows.net/?sig=secret"),
            "https://acct.blob.core.windows.net"
        );
        assert_eq!(
            display_endpoint("http://127.0.0.1:10000/devstoreaccount1"),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
    }
}
