//! The GCS backend's configuration: [`GcsOptions`] checked and turned into a client.
//!
//! Owns: which credentials are used (an explicit service account file, else the
//! application default credentials file, else the client's own chain: gcloud's user
//! credentials file, then the metadata server), the endpoint (Google's unless given, e.g.
//! an emulator's), unsigned requests for an emulator, and which of the shared object-store
//! settings GCS uses (layout, metadata key, error dialect, part size, a HEAD before ranged
//! gets). Reads no environment variable: the CLI passes `GOOGLE_APPLICATION_CREDENTIALS`
//! and `STORAGE_EMULATOR_HOST`. Makes no request.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::{Attributes, StaticCredentialProvider};

use crate::storage::objstore::{
    client_options, parse_prefix, plain_http_warning, retry_config, trim_endpoint,
    ObjectStoreReplica,
};
use crate::storage::{Layout, StorageError};

/// Files larger than this go up in parts of this size (the Go SDK's default chunk, which
/// Litestream uses).
const PART_SIZE_BYTES: usize = 16 * 1024 * 1024;

/// Parts of one file in flight at once.
const PART_CONCURRENCY: usize = 4;

/// Where and how to reach a bucket. Holds paths to credentials, never the credentials.
#[derive(Clone, Debug, Default)]
pub struct GcsOptions {
    pub bucket: String,
    /// Object name prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// An application default credentials file (service account key or authorized user),
    /// as `GOOGLE_APPLICATION_CREDENTIALS` names it; `None`: gcloud's file, then the
    /// metadata server.
    pub application_credentials: Option<PathBuf>,
    /// The storage API's base URL with a scheme; `None` is Google's.
    pub endpoint: Option<String>,
    /// Send no credentials and look none up (an emulator such as fake-gcs-server: what
    /// Google's client libraries do when `STORAGE_EMULATOR_HOST` is set).
    pub anonymous: bool,
}

/// The endpoint for `STORAGE_EMULATOR_HOST`'s value, read as Google's client libraries
/// read it: `host:port` means plain HTTP; a value with a scheme is used as given.
pub fn emulator_endpoint(host: &str) -> String {
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

/// Checks `opts` and builds the client with GCS's layout, metadata key, error dialect and
/// part size. Errors are `Permanent` and name the replica.
pub(super) fn build(opts: GcsOptions) -> Result<ObjectStoreReplica, StorageError> {
    let prefix_str = opts.prefix.trim_matches('/').to_string();
    let endpoint = trim_endpoint(opts.endpoint.as_deref());
    let location = match &endpoint {
        Some(e) => format!("gs://{}/{prefix_str} ({e})", opts.bucket),
        None => format!("gs://{}/{prefix_str}", opts.bucket),
    };
    let bad =
        |detail: String| StorageError::permanent(location.clone(), "replica configuration", detail);
    if opts.bucket.is_empty() {
        return Err(bad("no bucket given".into()));
    }
    let prefix = parse_prefix(&prefix_str).map_err(bad)?;

    let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(&opts.bucket);
    let mut allow_http = false;
    if let Some(e) = &endpoint {
        if !e.starts_with("http://") && !e.starts_with("https://") {
            return Err(bad(format!("endpoint {e:?} needs http:// or https://")));
        }
        allow_http = e.starts_with("http://");
        b = b.with_base_url(e);
    }
    if opts.anonymous {
        // An empty bearer token, fixed (the client's own `disable_oauth`): no metadata
        // server or token exchange, and no credentials file read (Google's clients ignore
        // it for an emulator too). Not `with_skip_signature`: object_store 0.14 still asks
        // the credential chain for a token on PUT and DELETE with it.
        b = b.with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
            bearer: String::new(),
        })));
    } else if let Some(p) = &opts.application_credentials {
        if !p.is_file() {
            return Err(bad(format!(
                "the credentials file {} (GOOGLE_APPLICATION_CREDENTIALS) does not exist",
                p.display()
            )));
        }
        b = b.with_application_credentials(p.to_string_lossy());
    }
    let sent: &[&str] = if opts.anonymous {
        &[]
    } else {
        &["the OAuth bearer token"]
    };
    if let Some(w) = plain_http_warning(endpoint.as_deref(), sent) {
        tracing::warn!(replica = %location, "{w}");
    }
    let store = b
        .with_client_options(client_options(allow_http))
        .with_retry(retry_config())
        .build()
        .map_err(|e| bad(format!("credentials: {e}")))?;
    Ok(ObjectStoreReplica {
        store: Arc::new(store),
        container: opts.bucket,
        prefix,
        location,
        secrets: Vec::new(),
        layout: Layout::LtxDir,
        timestamp_key: super::TIMESTAMP_METADATA,
        dialect: &super::error::DIALECT,
        part_size_bytes: PART_SIZE_BYTES,
        part_concurrency: PART_CONCURRENCY,
        base_attributes: Attributes::new(),
        // GCS answers a range starting past the end with 416 and one ending past it with
        // fewer bytes: check every range against the size first.
        head_before_range: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ErrorKind;

    fn base() -> GcsOptions {
        GcsOptions {
            bucket: "b".into(),
            prefix: "/db/x/".into(),
            application_credentials: None,
            endpoint: Some("http://127.0.0.1:4443/".into()),
            anonymous: false,
        }
    }

    #[test]
    fn options_are_checked_without_io() {
        let c = build(base()).unwrap();
        assert_eq!(c.location, "gs://b/db/x (http://127.0.0.1:4443)");
        assert_eq!(c.prefix.as_ref().map(|p| p.as_ref()), Some("db/x"));
        let c = build(GcsOptions {
            endpoint: None,
            prefix: String::new(),
            ..base()
        })
        .unwrap();
        assert_eq!((c.location.as_str(), c.prefix), ("gs://b/", None));

        let err = |o: GcsOptions| build(o).unwrap_err().to_string();
        assert!(err(GcsOptions {
            bucket: String::new(),
            ..base()
        })
        .contains("no bucket"));
        assert!(err(GcsOptions {
            endpoint: Some("127.0.0.1:4443".into()),
            ..base()
        })
        .contains("http://"));
        let e = err(GcsOptions {
            application_credentials: Some("/nonexistent/creds.json".into()),
            ..base()
        });
        assert!(
            e.contains("/nonexistent/creds.json") && e.contains("gs://b/db/x"),
            "{e}"
        );
        // An emulator: unsigned, and the credentials file is not read.
        build(GcsOptions {
            application_credentials: Some("/nonexistent/creds.json".into()),
            anonymous: true,
            ..base()
        })
        .unwrap();
    }

    #[test]
    fn the_emulator_host_is_read_as_googles_clients_read_it() {
        assert_eq!(emulator_endpoint("127.0.0.1:4443"), "http://127.0.0.1:4443");
        assert_eq!(
            emulator_endpoint("https://gcs.local:4443"),
            "https://gcs.local:4443"
        );
    }

    #[test]
    fn a_service_account_file_is_read_at_build() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sa.json");
        std::fs::write(&p, "{ not json").unwrap();
        let e = build(GcsOptions {
            application_credentials: Some(p),
            ..base()
        })
        .unwrap_err();
        assert!(
            e.kind() == ErrorKind::Permanent && e.detail().starts_with("credentials"),
            "{e}"
        );
    }
}
