//! The WebDAV backend: a replica in a collection on a WebDAV server (RFC 4918; tested on
//! WsgiDAV), Litestream's `webdav` replica type.
//!
//! Owns: mapping [`ReplicaStore`] calls onto `<root>/ltx/<level>/<min>-<max>.ltx` (the
//! layout of Litestream's webdav client, spelled by [`Layout::LtxDir`]) with plain HTTP
//! methods: `PROPFIND` (`Depth: 1`) to list a level, `GET` with `Range` to read, `DELETE`,
//! and atomic puts: `PUT` to a temp name beside the target, then `MOVE` onto it
//! (`Overwrite: T`), since some servers (WsgiDAV) write a `PUT` in place, where a reader
//! or a crash would see a prefix; a large file's `PUT` body is streamed from the local file
//! (`put_file`). Collections are made with `MKCOL` (parents too, on 409)
//! the first time the store writes into one, so the steady state is two requests per
//! upload.
//! `config` holds [`WebDavOptions`], `propfind` reads the multistatus XML.
//!
//! Timestamps: WebDAV has no portable way to set a file's modification time, so `list`
//! reports `created` as the server's `getlastmodified` (the upload time, to the second),
//! as Litestream's webdav client does; `list_exact_times` reads each file's LTX header
//! (one ranged `GET` of its first 100 bytes), whose millisecond timestamp is what `put`
//! was given, and keeps `getlastmodified` where the file is not LTX.
//!
//! Does not: conditional writes. `If-None-Match`/`If-Match` on `PUT` are honoured by
//! some servers but checked apart from the write (WsgiDAV checks, then opens the file),
//! so two writers can both win; leases and fenced uploads are refused on WebDAV, as on
//! other stores without atomic conditional writes. Nor does it read Litestream 0.3
//! replicas (Litestream's webdav client never wrote them).
//!
//! Errors: HTTP statuses map to [`ErrorKind`]s (404 not found, 401/403 permission, 412
//! precondition, 507 no space, 408/429/5xx and connection failures transient). Requests
//! carry the login as Basic auth, never in the URL, so no error or log line can show it.
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds `reqwest` (HTTP).

mod config;
mod propfind;

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use ltx::Level;
use reqwest::{Method, StatusCode, Url};

use super::layout::{Layout, LtxInfo, LtxKey};
use super::{
    ETag, ErrorKind, LocalFile, NamedObject, NamedStore, PutBody, ReplicaStore, StorageError,
};
pub use config::WebDavOptions;

/// Requests of one call in flight at once (header reads of a listing, deletes).
const CONCURRENCY: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte from the server for this long fails the request (transient).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A replica in a collection on a WebDAV server.
pub struct WebDavStore {
    client: reqwest::Client,
    /// The replica root, ending in `/`.
    root: Url,
    location: String,
    username: Option<String>,
    password: Option<String>,
    /// Collections (relative to the root) this store made or found with `MKCOL`.
    known_dirs: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for WebDavStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavStore")
            .field("location", &self.location)
            .finish()
    }
}

/// The answer to a compare-and-swap on WebDAV.
fn no_conditional_writes(location: &str, what: &str) -> StorageError {
    StorageError::unsupported(
        location,
        what,
        "conditional writes are not supported by this backend (WebDAV servers check \
         If-None-Match apart from the write, so two writers can both win)",
    )
}

impl WebDavStore {
    /// Checks the options and builds the HTTP client; no request is made until the first
    /// call. Errors are `Permanent` and name the replica.
    pub fn new(opts: WebDavOptions) -> Result<WebDavStore, StorageError> {
        let (root, location) = opts.root()?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| {
                StorageError::permanent(&location, "HTTP client", format!("cannot build: {e}"))
            })?;
        Ok(WebDavStore {
            client,
            root,
            location,
            username: opts.username.filter(|u| !u.is_empty()),
            password: opts.password.filter(|p| !p.is_empty()),
            known_dirs: Default::default(),
        })
    }

    /// The URL of `rel`, a `/`-separated path under the root (segments percent-encoded).
    fn url(&self, rel: &str) -> Url {
        let mut u = self.root.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty();
            segs.extend(rel.split('/'));
        }
        u
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let b = self.client.request(method, url);
        match (&self.username, &self.password) {
            (None, None) => b,
            (u, p) => b.basic_auth(u.as_deref().unwrap_or_default(), p.as_deref()),
        }
    }

    /// Sends `req`; a failure to get any answer is classified (transient when the server
    /// could not be reached or timed out).
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
        op: &'static str,
    ) -> Result<reqwest::Response, StorageError> {
        req.send().await.map_err(|e| self.transport(e, what, op))
    }

    fn transport(&self, e: reqwest::Error, what: &str, op: &'static str) -> StorageError {
        // reqwest's text names the URL, which never carries the login.
        let detail = super::objstore_error::chain_text(&e);
        let kind = if e.is_builder() || e.is_redirect() {
            ErrorKind::Permanent
        } else {
            ErrorKind::Transient
        };
        StorageError::new(kind, &self.location, what)
            .with_detail(detail)
            .during(op)
    }

    /// The error for an unexpected status.
    fn status_error(&self, status: StatusCode, what: &str, op: &'static str) -> StorageError {
        let loc = &self.location;
        let detail = format!("{op} answered HTTP {status}");
        let e = match status.as_u16() {
            404 | 410 => StorageError::not_found(loc, what),
            401 => StorageError::permission_denied(
                loc,
                what,
                format!("{detail}: check webdav-username and webdav-password"),
            ),
            403 => StorageError::permission_denied(loc, what, detail),
            412 => StorageError::precondition(loc, what),
            507 => StorageError::no_space(loc, what),
            408 | 429 | 500..=599 => StorageError::transient(loc, what, detail),
            _ => StorageError::permanent(loc, what, detail),
        };
        e.during(op)
    }

    /// `rel` with `range` (or whole), checked against the file's size.
    async fn get_rel(&self, rel: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        if let Some(r) = &range {
            if r.start > r.end {
                return Err(StorageError::permanent(
                    &self.location,
                    rel,
                    format!("empty range {}..{}", r.start, r.end),
                ));
            }
            if r.start == r.end {
                // No byte to ask for: the file must exist and be long enough.
                let size = self.head_rel(rel).await?.size_bytes;
                return match size >= r.end {
                    true => Ok(Bytes::new()),
                    false => Err(out_of_range(&self.location, rel, r, size)),
                };
            }
        }
        let mut req = self.request(Method::GET, self.url(rel));
        if let Some(r) = &range {
            req = req.header("Range", format!("bytes={}-{}", r.start, r.end - 1));
        }
        let resp = self.send(req, rel, "GET").await?;
        let status = resp.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            let r = range.unwrap_or(0..0);
            let size = content_range_total(&resp).unwrap_or(0);
            return Err(out_of_range(&self.location, rel, &r, size));
        }
        if !status.is_success() {
            return Err(self.status_error(status, rel, "GET"));
        }
        let partial = status == StatusCode::PARTIAL_CONTENT;
        let total = content_range_total(&resp);
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport(e, rel, "GET"))?;
        let Some(r) = range else { return Ok(body) };
        let want = (r.end - r.start) as usize;
        if !partial {
            // The server sent the whole file: cut the range out of it.
            let size = body.len() as u64;
            if r.end > size {
                return Err(out_of_range(&self.location, rel, &r, size));
            }
            return Ok(body.slice(r.start as usize..r.end as usize));
        }
        if body.len() == want {
            return Ok(body);
        }
        match total {
            Some(size) if size < r.end => Err(out_of_range(&self.location, rel, &r, size)),
            _ => Err(StorageError::transient(
                &self.location,
                rel,
                format!("short read: {} of {want} bytes", body.len()),
            )),
        }
    }

    async fn head_rel(&self, rel: &str) -> Result<NamedObject, StorageError> {
        let resp = self
            .send(self.request(Method::HEAD, self.url(rel)), rel, "HEAD")
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp.status(), rel, "HEAD"));
        }
        let h = resp.headers();
        let size_bytes = h
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        let modified = h
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| propfind::http_date(v.to_str().ok()?))
            .unwrap_or(UNIX_EPOCH);
        Ok(NamedObject {
            size_bytes,
            modified,
        })
    }

    /// The entries of the collection `rel` (without the collection itself); a missing
    /// collection has none.
    async fn propfind(&self, rel: &str) -> Result<Vec<propfind::Entry>, StorageError> {
        let what = format!("listing {rel}/");
        let dir = self.url(&format!("{rel}/"));
        // No body (RFC 4918 §9.1: all properties): WsgiDAV answers a PROPFIND of a missing
        // collection without reading the body, and its server then reads that body as the
        // next request on the connection, answering "400 Bad Request" to whoever sends
        // next (Litestream's client, which sends one, trips on it).
        let req = self
            .request(
                Method::from_bytes(b"PROPFIND").expect("a method"),
                dir.clone(),
            )
            .header("Depth", "1");
        let resp = self.send(req, &what, "PROPFIND").await?;
        match resp.status().as_u16() {
            207 => {}
            404 => return Ok(Vec::new()),
            _ => return Err(self.status_error(resp.status(), &what, "PROPFIND")),
        }
        let body = resp
            .text()
            .await
            .map_err(|e| self.transport(e, &what, "PROPFIND"))?;
        let entries = propfind::parse(&body).map_err(|e| {
            StorageError::permanent(&self.location, &what, format!("bad PROPFIND answer: {e}"))
        })?;
        // The collection itself is the entry whose href is its own path.
        let own = dir.path().trim_end_matches('/').to_string();
        Ok(entries
            .into_iter()
            .filter(|e| {
                let p = Url::parse(&e.href)
                    .map(|u| u.path().to_string())
                    .unwrap_or_else(|_| e.href.clone());
                p.trim_end_matches('/') != own
            })
            .collect())
    }

    /// `MKCOL` of `rel` and, where the server says a parent is missing, of its parents,
    /// up through the replica root's own (the root may not exist yet).
    async fn make_collections(&self, rel: &str) -> Result<(), StorageError> {
        let mut missing = vec![self.url(&format!("{rel}/"))];
        while let Some(dir) = missing.last().cloned() {
            let what = dir.path().to_string();
            let req = self.request(Method::from_bytes(b"MKCOL").expect("a method"), dir.clone());
            let resp = self.send(req, &what, "MKCOL").await?;
            match resp.status().as_u16() {
                // Made, or already there (405: RFC 4918 §9.3.1; some servers answer 301).
                200..=299 | 301 | 405 => {
                    missing.pop();
                }
                409 if missing.len() < 64 => {
                    let mut parent = dir.clone();
                    if let Ok(mut segs) = parent.path_segments_mut() {
                        segs.pop_if_empty().pop().push("");
                    }
                    if parent.path() == dir.path() || parent.path() == "/" {
                        // Nothing above left to make: the server refuses this one.
                        return Err(self.status_error(resp.status(), &what, "MKCOL"));
                    }
                    missing.push(parent);
                }
                _ => return Err(self.status_error(resp.status(), &what, "MKCOL")),
            }
        }
        Ok(())
    }

    /// `PUT` of `body` at `rel`. The collection above it is made (or found) with `MKCOL`
    /// the first time this store writes there, before any `PUT`: a `PUT` refused for a
    /// missing parent leaves its body unread, which some servers (WsgiDAV) then read as
    /// the next request on the connection. Should it be gone since, the `PUT` answers 409
    /// and the collections are made again once.
    ///
    /// A local file is sent as a stream of pieces read as the connection takes them
    /// (issue 27), with its length as `Content-Length`, so the request is framed as
    /// `put`'s is: not chunked, which some WebDAV servers refuse for a `PUT`.
    async fn put_plain(
        &self,
        rel: &str,
        body: PutBody<'_>,
        what: &str,
    ) -> Result<(), StorageError> {
        let dir = rel.rsplit_once('/').map(|(d, _)| d.to_string());
        if let Some(d) = &dir {
            if !self.known_dirs.lock().expect("not poisoned").contains(d) {
                self.make_collections(d).await?;
                self.known_dirs
                    .lock()
                    .expect("not poisoned")
                    .insert(d.clone());
            }
        }
        for attempt in 0..2 {
            let req = self
                .request(Method::PUT, self.url(rel))
                .header("Content-Type", "application/octet-stream");
            let req = match body {
                PutBody::Bytes(data) => req.body(data.clone()),
                PutBody::File(f) => req
                    .header(reqwest::header::CONTENT_LENGTH, f.len_bytes())
                    .body(reqwest::Body::wrap_stream(f.io_pieces())),
            };
            let resp = self
                .send(req, what, "PUT")
                .await
                .map_err(|e| body.failed(e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            // 409: a parent collection is missing (RFC 4918 §9.7.1); some servers say 404.
            let parent_missing = matches!(status.as_u16(), 409 | 404);
            match (parent_missing, &dir) {
                (true, Some(d)) if attempt == 0 => self.make_collections(d).await?,
                _ => return Err(self.status_error(status, what, "PUT")),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Stores `body` at `rel` atomically: a temp name beside it, then `MOVE` over it. The
    /// temp file is deleted when the `PUT` or the move fails.
    async fn put_atomic(
        &self,
        rel: &str,
        body: PutBody<'_>,
        what: &str,
    ) -> Result<(), StorageError> {
        let tmp = format!(
            "{rel}.{:x}{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        );
        if let Err(e) = self.put_plain(&tmp, body, what).await {
            // A body cut off part-way may have left a prefix under the temp name (WsgiDAV
            // writes a PUT in place): no listing shows it, but it takes space.
            let _ = self.delete_rel(&tmp).await;
            return Err(e);
        }
        let req = self
            .request(
                Method::from_bytes(b"MOVE").expect("a method"),
                self.url(&tmp),
            )
            .header("Destination", self.url(rel).as_str())
            .header("Overwrite", "T");
        let moved = match self.send(req, what, "MOVE").await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(self.status_error(r.status(), what, "MOVE")),
            Err(e) => Err(e),
        };
        if moved.is_err() {
            let _ = self.delete_rel(&tmp).await;
        }
        moved
    }

    async fn delete_rel(&self, rel: &str) -> Result<(), StorageError> {
        let resp = self
            .send(self.request(Method::DELETE, self.url(rel)), rel, "DELETE")
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(self.status_error(s, rel, "DELETE")),
        }
    }

    /// `created` from the file's LTX header when it has one; `None` when the file is gone.
    async fn exact_time(&self, info: LtxInfo) -> Result<Option<LtxInfo>, StorageError> {
        let n = (ltx::HEADER_SIZE as u64).min(info.size_bytes);
        let rel = Layout::LtxDir.key_path(&info.key);
        let head = match self.get_rel(&rel, Some(0..n)).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let created = ltx::Header::from_bytes(&head)
            .ok()
            .and_then(|h| u64::try_from(h.timestamp_ms).ok())
            .map_or(info.created, |ms| UNIX_EPOCH + Duration::from_millis(ms));
        Ok(Some(LtxInfo { created, ..info }))
    }
}

fn out_of_range(location: &str, what: &str, r: &Range<u64>, size: u64) -> StorageError {
    StorageError::permanent(
        location,
        what,
        format!("range {}..{} outside file of {size} bytes", r.start, r.end),
    )
}

/// The total size from `Content-Range: bytes a-b/total` (or `bytes */total`).
fn content_range_total(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .rsplit_once('/')?
        .1
        .trim()
        .parse()
        .ok()
}

#[async_trait]
impl ReplicaStore for WebDavStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let entries = self.propfind(&Layout::LtxDir.level_dir(level)).await?;
        let mut out: Vec<LtxInfo> = entries
            .into_iter()
            .filter(|e| !e.is_collection)
            .filter_map(|e| {
                Some(LtxInfo {
                    key: LtxKey::parse_file_name(level, &e.name)?,
                    size_bytes: e.size.unwrap_or(0),
                    created: e.modified.unwrap_or(UNIX_EPOCH),
                })
            })
            .collect();
        out.sort_by_key(|i| (i.key.min, i.key.max));
        Ok(out)
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.list(level).await?;
        let exact: Vec<Option<LtxInfo>> = stream::iter(files)
            .map(|info| self.exact_time(info))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(exact.into_iter().flatten().collect())
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.get_rel(&Layout::LtxDir.key_path(key), range).await
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        // `created` is the LTX header's timestamp, which `list_exact_times` reads back.
        let _ = created;
        let what = key.to_string();
        self.put_atomic(&Layout::LtxDir.key_path(key), PutBody::Bytes(&data), &what)
            .await
    }

    /// `put`'s `PUT` and `MOVE`, the body streamed from the local file in pieces.
    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        // `created` is the LTX header's timestamp, as for `put`.
        let _ = created;
        let local = LocalFile::new(&self.location, key, file, len_bytes)?;
        let what = key.to_string();
        self.put_atomic(&Layout::LtxDir.key_path(key), PutBody::File(&local), &what)
            .await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        let rels: Vec<String> = keys.iter().map(|k| Layout::LtxDir.key_path(k)).collect();
        stream::iter(rels)
            .map(|rel| async move { self.delete_rel(&rel).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        Ok(self)
    }
}

/// Named objects: written like LTX files (temp name, `MOVE`). No conditional writes (see
/// the module docs): what needs one (leases, fenced puts) is refused.
#[async_trait]
impl NamedStore for WebDavStore {
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.put_atomic(name, PutBody::Bytes(&data), name).await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.get_rel(name, range).await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.head_rel(name).await
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.delete_rel(name).await
    }

    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let _ = data;
        Err(no_conditional_writes(&self.location, name))
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        Err(no_conditional_writes(&self.location, name))
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        let _ = (data, etag);
        Err(no_conditional_writes(&self.location, name))
    }

    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let _ = (data, created);
        Err(no_conditional_writes(&self.location, &key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str, path: &str) -> WebDavStore {
        WebDavStore::new(WebDavOptions {
            url: url.into(),
            path: path.into(),
            username: Some("u".into()),
            password: Some("hunter2".into()),
        })
        .unwrap()
    }

    #[test]
    fn keys_are_spelled_by_the_layout_under_the_root() {
        let k = LtxKey::new(
            Level::SNAPSHOT,
            ltx::TxId::new(1).unwrap(),
            ltx::TxId::new(6).unwrap(),
        );
        let name = "ltx/9/0000000000000001-0000000000000006.ltx";
        let s = store("http://h:8080/dav", "/srv/db/");
        assert_eq!(
            s.url(&Layout::LtxDir.key_path(&k)).as_str(),
            format!("http://h:8080/dav/srv/db/{name}")
        );
        assert_eq!(s.location(), "webdav://h:8080/dav/srv/db");
        assert_eq!(
            store("https://h", "").url("lock.json").as_str(),
            "https://h/lock.json"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
