//! Replica URLs: splitting them into parts, and printing them without passwords.
//!
//! Accepted forms (the scheme gives the replica type):
//! - `file:///abs/path`, or a bare path (`/abs/path`, `relative/dir`);
//! - `s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true&skipVerify=true`, also
//!   `signPayload`, `requireContentMD5`, `concurrency`, `partSize`, `storageClass` and the
//!   kebab-case spellings (`force-path-style`, ...). A host `bucket.s3.REGION.amazonaws.com`
//!   gives bucket and region; `bucket.host:port` (MinIO style) gives bucket and an
//!   `http://host:port` endpoint;
//! - `gs://bucket/path`, `abs://[account@]container/path`,
//!   `sftp://user[:password]@host[:port]/path`,
//!   `webdav://[user[:password]@]host[:port]/path` (http) and `webdavs://...` (https),
//!   `oss://bucket[.oss-REGION[-internal].aliyuncs.com]/path` (Alibaba OSS, served by the
//!   S3 client through OSS's S3-compatible API),
//!   `nats://[user[:password]@]host[:port]/bucket[/path]`.
//!
//! Not handled: S3 access-point ARNs and Litestream's per-provider host detection
//! (DigitalOcean, B2, Filebase, ...); give `endpoint` for those.
//!
//! Combining the parts with a replica's other keys happens in `build.rs`; this file only
//! reads the text.

use super::error::{ConfigError, ErrorKind};

/// A replica URL, split and percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// `file`, `s3`, `gs`, `abs`, `sftp`, `webdav`, `nats` or `oss`.
    pub replica_type: &'static str,
    pub host: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// For `file`: the local path. Otherwise the URL path as written (leading `/` kept).
    pub path: String,
    /// Query parameters in order, decoded.
    pub query: Vec<(String, String)>,
}

/// Splits `url`. A string without `scheme://` is a file path.
pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, ConfigError> {
    let bad = |reason: &str| {
        ConfigError::new(
            "",
            ErrorKind::BadUrl {
                url: redact_url(url),
                reason: reason.to_string(),
            },
        )
    };
    if url.is_empty() {
        return Err(bad("it is empty"));
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        if let Some(intended) = malformed_scheme(url) {
            return Err(bad(&format!(
                "the scheme is malformed: write {intended} (for a local directory of that name, write ./{url})"
            )));
        }
        return Ok(ParsedUrl {
            replica_type: "file",
            host: String::new(),
            user: None,
            password: None,
            path: url.to_string(),
            query: Vec::new(),
        });
    };
    let replica_type = match scheme.to_ascii_lowercase().as_str() {
        "file" => "file",
        "s3" => "s3",
        "gs" | "gcs" => "gs",
        "abs" => "abs",
        "sftp" => "sftp",
        "webdav" | "webdavs" => "webdav",
        "nats" => "nats",
        "oss" => "oss",
        _ => {
            return Err(bad(&format!(
                "unknown scheme {scheme:?} (file, s3, gs, abs, sftp, webdav, webdavs, oss, nats)"
            )))
        }
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (rest, raw_query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, raw_path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => (
                Some(decode(user).map_err(|e| bad(&e))?),
                Some(decode(pass).map_err(|e| bad(&e))?),
            ),
            None => (Some(decode(u).map_err(|e| bad(&e))?), None),
        },
    };
    let query = decode_query(raw_query.unwrap_or_default()).map_err(|e| bad(&e))?;
    let mut path = decode(raw_path).map_err(|e| bad(&e))?;
    if replica_type == "file" {
        if !query.is_empty() || userinfo.is_some() {
            return Err(bad("a file URL takes no user or query parameters"));
        }
        // As Go's url.Parse: file://host/p is the path /host/p.
        if !host.is_empty() && host != "localhost" {
            path = format!("/{host}{path}");
        }
        if path.is_empty() {
            return Err(bad("it has no path (write file:///absolute/path)"));
        }
        let path = drive_path(path, cfg!(windows));
        return Ok(ParsedUrl {
            replica_type,
            host: String::new(),
            user: None,
            password: None,
            path,
            query,
        });
    }
    if host.is_empty() {
        return Err(bad(match replica_type {
            "s3" | "gs" => "it has no bucket (write s3://BUCKET/path)",
            "oss" => "it has no bucket (write oss://BUCKET/path)",
            "abs" => "it has no container (write abs://[ACCOUNT@]CONTAINER/path)",
            _ => "it has no host",
        }));
    }
    if host.to_ascii_lowercase().starts_with("arn:") {
        return Err(bad(
            "S3 access-point ARNs are not supported; use the bucket name and `endpoint`",
        ));
    }
    Ok(ParsedUrl {
        replica_type,
        host: host.to_string(),
        user,
        password,
        path,
        query,
    })
}

/// The schemes a replica URL can have (unknown ones are refused when spelt `x://`).
const SCHEMES: &[&str] = &[
    "file", "s3", "gs", "gcs", "abs", "sftp", "webdav", "webdavs", "nats", "oss",
];

/// For a string that is not `scheme://…` but starts with a replica scheme and a colon
/// (`gs:/bucket`, `s3:bucket/db`: a typo for `gs://`, issue 25), the URL it was meant to
/// be. Such a string used to be taken as a relative directory (`gs:` under the current
/// one), replicating somewhere nobody looks. A path starting `./` or `/` is never one.
pub fn malformed_scheme(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once(':')?;
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) || rest.starts_with("//") {
        return None;
    }
    let path = rest.trim_start_matches('/');
    Some(if scheme.eq_ignore_ascii_case("file") {
        format!("{scheme}:///{path}")
    } else {
        format!("{scheme}://{path}")
    })
}

/// A file URL's path as a local path: on Windows `/C:/backups/app` (from
/// `file:///C:/backups/app`, or `file://C:/backups/app`) is the drive path
/// `C:/backups/app`; elsewhere, and for any other path, unchanged.
fn drive_path(path: String, windows: bool) -> String {
    let b = path.as_bytes();
    let drive = b.len() >= 3
        && b[0] == b'/'
        && b[1].is_ascii_alphabetic()
        && b[2] == b':'
        && (b.len() == 3 || b[3] == b'/' || b[3] == b'\\');
    if windows && drive {
        path[1..].to_string()
    } else {
        path
    }
}

/// `scheme` and the rest after `://`, if `s` starts with a URL scheme.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then_some((scheme, rest))
}

/// The `k=v&...` pairs of a query string, percent-decoded.
fn decode_query(raw: &str) -> Result<Vec<(String, String)>, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            let Some(hex) = hex else {
                return Err("it has a `%` not followed by two hex digits".into());
            };
            out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape is not UTF-8".into())
}

/// S3 host forms: `bucket.s3[.-]region.amazonaws.com`, `bucket.s3.amazonaws.com`,
/// `bucket.host:port` (MinIO style), else the host is the bucket.
/// Returns (bucket, region, endpoint).
pub(crate) fn parse_s3_host(host: &str) -> (String, Option<String>, Option<String>) {
    if host.contains(':') && !host.contains(".com") {
        return match host.split_once('.') {
            Some((bucket, endpoint)) => {
                (bucket.to_string(), None, Some(format!("http://{endpoint}")))
            }
            None => (String::new(), None, Some(format!("http://{host}"))),
        };
    }
    if let Some(prefix) = host.strip_suffix(".amazonaws.com") {
        if let Some(bucket) = prefix.strip_suffix(".s3") {
            return (bucket.to_string(), None, None);
        }
        for sep in [".s3.", ".s3-"] {
            if let Some((bucket, region)) = prefix.rsplit_once(sep) {
                if !region.is_empty() && !region.contains('.') {
                    return (bucket.to_string(), Some(region.to_string()), None);
                }
            }
        }
    }
    (host.to_string(), None, None)
}

/// `bucket.oss-REGION.aliyuncs.com` or `bucket.oss-REGION-internal.aliyuncs.com` → bucket
/// and region (Litestream's `oss.ParseHost`); any other host is the bucket.
pub(crate) fn parse_oss_host(host: &str) -> (String, Option<String>) {
    if let Some((bucket, rest)) = host.split_once('.') {
        if let Some(region) = rest
            .strip_suffix(".aliyuncs.com")
            .and_then(|r| r.strip_prefix("oss-"))
        {
            let region = region.strip_suffix("-internal").unwrap_or(region);
            if !region.is_empty() && !region.contains('.') {
                return (bucket.to_string(), Some(region.to_string()));
            }
        }
    }
    (host.to_string(), None)
}

/// An endpoint with a scheme: as given if it has one, else `http://` for local and
/// private addresses and `https://` for the rest.
pub(crate) fn ensure_endpoint_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        return endpoint.to_string();
    }
    let host = endpoint.split(['/', ':']).next().unwrap_or_default();
    let private_172 = host
        .strip_prefix("172.")
        .and_then(|r| r.split('.').next())
        .and_then(|o| o.parse::<u8>().ok())
        .is_some_and(|o| (16..=31).contains(&o));
    let local = host == "localhost"
        || endpoint.starts_with("[::1]")
        || host.starts_with("127.")
        || host.starts_with("10.")
        || host.starts_with("192.168.")
        || host == "0.0.0.0"
        || host.ends_with(".local")
        || host.ends_with(".localhost")
        || private_172;
    format!("{}://{endpoint}", if local { "http" } else { "https" })
}

/// `url` with the password of its user info replaced by `***`; for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = split_scheme(url) else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

/// `url` with `rel` (a relative, `/`-separated path) appended to its path, keeping the
/// query: how directory configs give each database its own replica location.
pub(crate) fn append_url_path(url: &str, rel: &str) -> String {
    let rel = rel.trim_matches('/');
    if rel.is_empty() {
        return url.to_string();
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return format!("{}/{rel}", url.trim_end_matches('/'));
    };
    let (rest, query) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    format!("{scheme}://{authority}{path}/{rel}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(
        t: &'static str,
        host: &str,
        user: Option<&str>,
        pass: Option<&str>,
        path: &str,
        q: &[(&str, &str)],
    ) -> ParsedUrl {
        ParsedUrl {
            replica_type: t,
            host: host.into(),
            user: user.map(Into::into),
            password: pass.map(Into::into),
            path: path.into(),
            query: q
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn splits_replica_urls() {
        let cases: Vec<(&str, ParsedUrl)> = vec![
            (
                "file:///backups/app",
                parsed("file", "", None, None, "/backups/app", &[]),
            ),
            (
                "file://localhost/backups/app",
                parsed("file", "", None, None, "/backups/app", &[]),
            ),
            (
                "file://backups/app",
                parsed("file", "", None, None, "/backups/app", &[]),
            ),
            (
                "/backups/app",
                parsed("file", "", None, None, "/backups/app", &[]),
            ),
            (
                "relative/dir",
                parsed("file", "", None, None, "relative/dir", &[]),
            ),
            ("file:///a%20b", parsed("file", "", None, None, "/a b", &[])),
            ("s3://bucket", parsed("s3", "bucket", None, None, "", &[])),
            (
                "s3://bucket/db/prod",
                parsed("s3", "bucket", None, None, "/db/prod", &[]),
            ),
            (
                "s3://bucket/db?endpoint=http://localhost:9000&region=auto&forcePathStyle=true",
                parsed(
                    "s3",
                    "bucket",
                    None,
                    None,
                    "/db",
                    &[
                        ("endpoint", "http://localhost:9000"),
                        ("region", "auto"),
                        ("forcePathStyle", "true"),
                    ],
                ),
            ),
            (
                "S3://bucket/x#frag",
                parsed("s3", "bucket", None, None, "/x", &[]),
            ),
            (
                "gs://bucket/path",
                parsed("gs", "bucket", None, None, "/path", &[]),
            ),
            (
                "abs://acct@container/path",
                parsed("abs", "container", Some("acct"), None, "/path", &[]),
            ),
            (
                "sftp://bob:p%40ss@host:2222/srv/x",
                parsed(
                    "sftp",
                    "host:2222",
                    Some("bob"),
                    Some("p@ss"),
                    "/srv/x",
                    &[],
                ),
            ),
            (
                "webdavs://h/p",
                parsed("webdav", "h", None, None, "/p", &[]),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn rejects_bad_urls_without_leaking_passwords() {
        let cases: &[(&str, &str)] = &[
            ("", r#"invalid replica URL "": it is empty"#),
            (
                "ftp://h/p",
                r#"invalid replica URL "ftp://h/p": unknown scheme "ftp" (file, s3, gs, abs, sftp, webdav, webdavs, oss, nats)"#,
            ),
            (
                "s3:///path",
                r#"invalid replica URL "s3:///path": it has no bucket (write s3://BUCKET/path)"#,
            ),
            (
                "sftp://bob:hunter2@/x",
                r#"invalid replica URL "sftp://bob:***@/x": it has no host"#,
            ),
            (
                "sftp://bob:hunter2@h/%zz",
                r#"invalid replica URL "sftp://bob:***@h/%zz": it has a `%` not followed by two hex digits"#,
            ),
            (
                "file://",
                r#"invalid replica URL "file://": it has no path (write file:///absolute/path)"#,
            ),
            (
                "file:///x?a=b",
                r#"invalid replica URL "file:///x?a=b": a file URL takes no user or query parameters"#,
            ),
            (
                "s3://arn:aws:s3:us-east-1:123:accesspoint/ap/db",
                "invalid replica URL \"s3://arn:aws:s3:us-east-1:123:accesspoint/ap/db\": \
                 S3 access-point ARNs are not supported; use the bucket name and `endpoint`",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url).unwrap_err().to_string(), *want, "{url}");
        }
    }

    #[test]
    fn s3_hosts() {
        type Want<'a> = (&'a str, Option<&'a str>, Option<&'a str>);
        let cases: &[(&str, Want)] = &[
            ("my-bucket", ("my-bucket", None, None)),
            ("my-bucket.s3.amazonaws.com", ("my-bucket", None, None)),
            (
                "my-bucket.s3.eu-west-1.amazonaws.com",
                ("my-bucket", Some("eu-west-1"), None),
            ),
            (
                "my-bucket.s3-eu-west-1.amazonaws.com",
                ("my-bucket", Some("eu-west-1"), None),
            ),
            (
                "bkt.localhost:9000",
                ("bkt", None, Some("http://localhost:9000")),
            ),
            ("localhost:9000", ("", None, Some("http://localhost:9000"))),
        ];
        for (host, (b, r, e)) in cases {
            let got = parse_s3_host(host);
            assert_eq!(
                (got.0.as_str(), got.1.as_deref(), got.2.as_deref()),
                (*b, *r, *e),
                "{host}"
            );
        }
    }

    #[test]
    fn endpoint_schemes() {
        let cases: &[(&str, &str)] = &[
            ("http://x:9000", "http://x:9000"),
            ("https://s3.example.com", "https://s3.example.com"),
            ("localhost:9000", "http://localhost:9000"),
            ("127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("192.168.1.5:9000", "http://192.168.1.5:9000"),
            ("172.20.0.2", "http://172.20.0.2"),
            ("172.40.0.2", "https://172.40.0.2"),
            ("fly.storage.tigris.dev", "https://fly.storage.tigris.dev"),
        ];
        for (e, want) in cases {
            assert_eq!(ensure_endpoint_scheme(e), *want);
        }
    }

    #[test]
    fn redacts_passwords_only() {
        let cases: &[(&str, &str)] = &[
            ("sftp://bob:hunter2@host/p", "sftp://bob:***@host/p"),
            ("sftp://bob@host/p", "sftp://bob@host/p"),
            ("s3://bucket/p?region=x", "s3://bucket/p?region=x"),
            ("/plain/path", "/plain/path"),
            ("sftp://bob:a@b@host/p", "sftp://bob:***@host/p"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), *want);
        }
    }

    #[test]
    fn windows_paths_and_file_urls() {
        // file:///C:/... and file://C:/... name a drive path on Windows; elsewhere the
        // URL's path is kept as written.
        for url in ["file:///C:/backups/app", "file://C:/backups/app"] {
            assert_eq!(parse_url(url).unwrap().path, "/C:/backups/app");
        }
        assert_eq!(drive_path("/C:/backups/app".into(), true), "C:/backups/app");
        assert_eq!(drive_path("/d:".into(), true), "d:");
        assert_eq!(drive_path(r"/C:\b".into(), true), r"C:\b");
        assert_eq!(drive_path("/C:/backups".into(), false), "/C:/backups");
        assert_eq!(drive_path("/CD:/x".into(), true), "/CD:/x");
        assert_eq!(drive_path("/backups/app".into(), true), "/backups/app");
        // A bare Windows path (drive letter, backslashes) is a file path, not a scheme.
        for p in [r"C:\backups\app", "C:/backups/app", r"\\server\share\app"] {
            let u = parse_url(p).unwrap();
            assert_eq!((u.replica_type, u.path.as_str()), ("file", p));
        }
        // Directory configs append with `/`, which Windows takes as a separator too.
        assert_eq!(
            append_url_path(r"C:\backups", "team/a.db"),
            r"C:\backups/team/a.db"
        );
        assert_eq!(
            append_url_path("file:///C:/backups", "a.db"),
            "file:///C:/backups/a.db"
        );
    }

    #[test]
    fn appends_relative_paths() {
        let cases: &[(&str, &str, &str)] = &[
            ("file:///backups", "a/b.db", "file:///backups/a/b.db"),
            ("file:///backups/", "b.db", "file:///backups/b.db"),
            ("s3://bucket", "b.db", "s3://bucket/b.db"),
            (
                "s3://bucket/prefix?region=x",
                "t/b.db",
                "s3://bucket/prefix/t/b.db?region=x",
            ),
            ("/backups", "b.db", "/backups/b.db"),
            ("s3://bucket/p", "", "s3://bucket/p"),
        ];
        for (url, rel, want) in cases {
            assert_eq!(append_url_path(url, rel), *want);
        }
    }
}
