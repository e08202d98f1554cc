//! The WebDAV backend's configuration: [`WebDavOptions`], checked without I/O.
//!
//! Owns: the server URL (`http` or `https`, with an optional path under which the replica
//! path lives, as Litestream's `webdav-url`), the login, the replica path, and the
//! replica's display location (the root URL without credentials, as `webdav://` for
//! http and `webdavs://` for https).

use std::fmt;

use reqwest::Url;

use crate::storage::StorageError;

/// Where and how to reach a WebDAV server. The password never prints (`Debug` shows `***`).
#[derive(Clone, Default)]
pub struct WebDavOptions {
    /// `http://host[:port][/base]` or `https://...`: Litestream's `webdav-url`, or the
    /// scheme and host of a `webdav://` (`http`) or `webdavs://` (`https`) URL. Never
    /// carries credentials.
    pub url: String,
    /// Basic-auth user; `None` sends no `Authorization` header.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The replica root under the URL's path (leading and trailing `/` do not matter).
    pub path: String,
}

impl fmt::Debug for WebDavOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDavOptions")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("path", &self.path)
            .finish()
    }
}

impl WebDavOptions {
    /// The replica root as a URL ending in `/`, and its display location (the same URL
    /// as `webdav://` or `webdavs://`, without the final `/`). Errors are `Permanent` and name what is wrong.
    pub(super) fn root(&self) -> Result<(Url, String), StorageError> {
        let shown = redact(&self.url);
        let shown = shown.as_str();
        let bad = |detail: String| StorageError::permanent(shown, "replica configuration", detail);
        let mut url =
            Url::parse(&self.url).map_err(|e| bad(format!("webdav-url is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "webdav-url must be http:// or https://, not {}://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("webdav-url has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "webdav-url must not carry a login: set webdav-username and webdav-password".into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("webdav-url takes no query or fragment".into()));
        }
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| bad("webdav-url cannot have a path".into()))?;
            segs.pop_if_empty();
            for s in self.path.split('/').filter(|s| !s.is_empty() && *s != ".") {
                if s == ".." {
                    return Err(bad(format!("path {:?} has a `..` segment", self.path)));
                }
                segs.push(s);
            }
            // A trailing `/`: the root is a collection, and joins stay under it.
            segs.push("");
        }
        // `webdav://` for http, `webdavs://` for https: Litestream's schemes, and the type.
        let rest = url.as_str().split_once("://").map_or("", |(_, r)| r);
        let s = if url.scheme() == "https" { "s" } else { "" };
        let location = format!("webdav{s}://{}", rest.trim_end_matches('/'));
        Ok((url, location))
    }
}

/// `url` without a login (`scheme://user:pass@host` → `scheme://host`), query or fragment.
fn redact(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let host = rest[..end]
                .rsplit_once('@')
                .map_or(&rest[..end], |(_, h)| h);
            format!("{scheme}://{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str, path: &str) -> WebDavOptions {
        WebDavOptions {
            url: url.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_root_joins_the_url_path_and_the_replica_path() {
        let root = |u: &str, p: &str| opts(u, p).root().unwrap();
        assert_eq!(
            root("http://h:8080", "/db/app").0.as_str(),
            "http://h:8080/db/app/"
        );
        assert_eq!(
            root("https://h/dav/", "db/app/").0.as_str(),
            "https://h/dav/db/app/"
        );
        assert_eq!(root("http://h", "").0.as_str(), "http://h/");
        assert_eq!(root("http://h", "").1, "webdav://h");
        assert_eq!(
            root("http://h", "/my db").0.as_str(),
            "http://h/my%20db/",
            "segments are percent-encoded"
        );
        assert_eq!(root("http://h/dav", "x").1, "webdav://h/dav/x");
        assert_eq!(root("https://h:8443", "x").1, "webdavs://h:8443/x");
    }

    #[test]
    fn bad_urls_are_refused_without_io_and_never_show_the_password() {
        for (u, want) in [
            ("ftp://h", "http:// or https://"),
            ("not a url", "not a URL"),
            ("http://u:hunter2@h/", "must not carry a login"),
            ("http://h/?a=b", "no query"),
        ] {
            let e = opts(u, "p").root().unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains("hunter2"), "{u}: {e}");
        }
        assert!(opts("http://h", "a/../b").root().is_err());
        let mut o = opts("http://h", "p");
        o.password = Some("hunter2".into());
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
