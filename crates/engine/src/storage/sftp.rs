//! The SFTP backend: a replica in a directory on an SSH server (OpenSSH's `sftp-server` or
//! `internal-sftp`, or any SFTP v3 server).
//!
//! Owns: mapping [`ReplicaStore`] calls onto `<path>/ltx/<level>/<min>-<max>.ltx` (the
//! layout of the file backend and Litestream's sftp client, spelled by
//! [`Layout::LtxDir`]); atomic puts (a temp name beside the target, fsync where the server
//! offers `fsync@openssh.com`, mtime set to `created`, then `posix-rename@openssh.com`);
//! conditional creates by `hardlink@openssh.com` (or SFTP v3 rename, which refuses an
//! existing target); pipelined reads and writes on one session (a large file's writes read
//! from the local file in pieces as they go, `put_file`); one connection per store,
//! dropped when it breaks and made again on the next call (idempotent calls retry once at
//! once when a reused connection turns out dead); reading Litestream 0.3's `generations/`.
//! `config` holds [`SftpOptions`], `conn` makes and checks a connection (host key, login),
//! `error` classifies failures into [`StorageError`] kinds.
//!
//! Timestamps: SFTP v3 carries mtime in whole seconds, so `list` reports `created`
//! truncated to the second (as Litestream's sftp replicas do). `list_exact_times` reads
//! each file's LTX header, whose millisecond timestamp is what `put` was given, and keeps
//! the mtime where the header is not an LTX header of the same second.
//!
//! Does not: fsync directories (SFTP has no such request; a server crash right after a
//! rename may lose it), create the replica root's parents beyond `mkdir -p` rights of
//! the login, learn host keys (an unknown key is refused with what to configure), or use
//! an SSH agent.
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds `russh` (SSH) and
//! `russh-sftp` (the SFTP protocol).

mod config;
mod conn;
mod error;

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use futures::TryFutureExt;
use ltx::Level;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use super::layout::v3::{self, V3File};
use super::layout::{Layout, LtxInfo, LtxKey};
use super::{
    ETag, LocalFile, NamedObject, NamedStore, PutBody, ReplicaStore, StorageError, V3Store,
};
use config::ExpectedHostKey;
pub use config::{split_host_port, SftpOptions, DEFAULT_PORT};
use conn::Conn;
use error::Failure;

/// Requests of one call in flight at once (reads of one file, header reads of a listing,
/// deletes).
const CONCURRENCY: usize = 16;

/// Whether a call may run again on a fresh connection after the old one broke under it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Running it twice has the effect of running it once.
    Idempotent,
    /// A second run could report the first run's own effect as a conflict.
    Once,
}

/// A replica in a directory on an SFTP server.
pub struct SftpStore {
    opts: SftpOptions,
    expected: Option<ExpectedHostKey>,
    location: String,
    /// The replica root as given, without trailing `/` (`/` for the server's root; empty
    /// for the login directory).
    root: String,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl std::fmt::Debug for SftpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStore")
            .field("location", &self.location)
            .finish()
    }
}

impl SftpStore {
    /// Checks the options; no connection is made until the first call. Errors are
    /// `Permanent` and name the replica.
    pub fn new(opts: SftpOptions) -> Result<SftpStore, StorageError> {
        let expected = opts.check()?;
        let trimmed = opts.path.trim_end_matches('/');
        let root = if trimmed.is_empty() && opts.path.starts_with('/') {
            "/".to_string()
        } else {
            trimmed.to_string()
        };
        Ok(SftpStore {
            location: opts.location(),
            expected,
            root,
            opts,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The server path of `rel` (relative to the replica root).
    fn remote(&self, rel: &str) -> String {
        match self.root.as_str() {
            "" => rel.to_string(),
            "/" => format!("/{rel}"),
            r => format!("{r}/{rel}"),
        }
    }

    fn key_path(&self, key: &LtxKey) -> String {
        self.remote(&Layout::LtxDir.key_path(key))
    }

    /// The live connection, or a new one; `true` when it is new.
    async fn conn(&self) -> Result<(Arc<Conn>, bool), StorageError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok((c.clone(), false));
        }
        if let Some(old) = slot.take() {
            old.close().await;
        }
        let c = Arc::new(conn::connect(&self.opts, self.expected.as_ref()).await?);
        *slot = Some(c.clone());
        Ok((c, true))
    }

    /// Forgets `broken` so the next call connects again.
    async fn drop_conn(&self, broken: &Arc<Conn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            slot.take();
            drop(slot);
            broken.close().await;
        }
    }

    /// Runs `f` on the connection. A broken connection is dropped; an idempotent call that
    /// found the reused connection dead runs once more on a new one.
    async fn run<T, F, Fut>(&self, what: &str, retry: Retry, f: F) -> Result<T, StorageError>
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let (c, fresh) = self.conn().await?;
        let err = match f(c.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.is_lost() {
            return Err(err.classify(&self.location, what));
        }
        self.drop_conn(&c).await;
        if retry == Retry::Once || fresh {
            return Err(err.classify(&self.location, what));
        }
        tracing::debug!(replica = %self.location, "SFTP connection was broken; reconnecting");
        let (c, _) = self.conn().await?;
        match f(c.clone()).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_lost() {
                    self.drop_conn(&c).await;
                }
                Err(e.classify(&self.location, what))
            }
        }
    }

    fn transient(&self, what: &str, detail: String) -> Failure {
        Failure::Storage(StorageError::transient(
            self.location.clone(),
            what.to_string(),
            detail,
        ))
    }
}

/// Operations on one connection.
impl SftpStore {
    /// Every entry of a directory (name, attributes); a missing directory has none.
    async fn read_dir(
        &self,
        c: &Conn,
        dir: &str,
    ) -> Result<Vec<(String, FileAttributes)>, Failure> {
        let handle = match c.sftp.opendir(dir).await {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        let result = loop {
            match c.sftp.readdir(handle.as_str()).await {
                Ok(name) => out.extend(name.files.into_iter().map(|f| (f.filename, f.attrs))),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break Ok(()),
                Err(e) => break Err(Failure::from(e)),
            }
        };
        let _ = c.sftp.close(handle).await;
        result.map(|()| out)
    }

    /// Opens `path` for reading with its size.
    async fn open_read(&self, c: &Conn, path: &str) -> Result<(String, u64), Failure> {
        let handle = c
            .sftp
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await?
            .handle;
        match c.sftp.fstat(handle.as_str()).await {
            Ok(a) => Ok((handle, a.attrs.size.unwrap_or(0))),
            Err(e) => {
                let _ = c.sftp.close(handle).await;
                Err(e.into())
            }
        }
    }

    /// Exactly the bytes `range` of an open file, read in parallel chunks; a short read
    /// (the file shrank) is transient.
    async fn read_range(
        &self,
        c: &Conn,
        handle: &str,
        range: Range<u64>,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        let chunk = u64::from(c.read_chunk_bytes);
        let pieces = (range.start..range.end)
            .step_by(chunk as usize)
            .map(|off| (off, (range.end - off).min(chunk) as u32));
        let parts: Vec<Vec<u8>> = stream::iter(pieces)
            .map(|(off, len)| async move {
                let mut buf = Vec::with_capacity(len as usize);
                while buf.len() < len as usize {
                    let at = off + buf.len() as u64;
                    let want = len - buf.len() as u32;
                    match c.sftp.read(handle, at, want).await {
                        Ok(d) if !d.data.is_empty() => buf.extend_from_slice(&d.data),
                        Ok(_) => {
                            return Err(self.transient(what, format!("short read at byte {at}")))
                        }
                        Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => {
                            return Err(self.transient(what, format!("short read at byte {at}")))
                        }
                        Err(e) => return Err(Failure::from(e)),
                    }
                }
                Ok(buf)
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(parts.concat())
    }

    /// A whole file.
    async fn read_file(&self, c: &Conn, path: &str, what: &str) -> Result<Vec<u8>, Failure> {
        let (handle, size) = self.open_read(c, path).await?;
        let r = self.read_range(c, &handle, 0..size, what).await;
        let _ = c.sftp.close(handle).await;
        r
    }

    /// `mkdir -p dir`.
    async fn make_dirs(&self, c: &Conn, dir: &str) -> Result<(), Failure> {
        let mut missing = Vec::new();
        let mut cur = dir.trim_end_matches('/').to_string();
        // Walk up until a directory can be made or exists, then make the rest downwards.
        loop {
            if cur.is_empty() || cur == "/" {
                break;
            }
            match c.sftp.mkdir(cur.as_str(), FileAttributes::empty()).await {
                Ok(_) => break,
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                    let parent = match cur.rsplit_once('/') {
                        Some((p, _)) if !p.is_empty() => p.to_string(),
                        Some(_) => "/".to_string(),
                        None => String::new(),
                    };
                    missing.push(std::mem::replace(&mut cur, parent));
                }
                Err(e) => {
                    // Already there (OpenSSH answers EEXIST with the generic failure)?
                    let exists = c
                        .sftp
                        .stat(cur.as_str())
                        .await
                        .is_ok_and(|a| a.attrs.file_type().is_dir());
                    if !exists {
                        return Err(e.into());
                    }
                    break;
                }
            }
        }
        while let Some(d) = missing.pop() {
            match c.sftp.mkdir(d.as_str(), FileAttributes::empty()).await {
                Ok(_) => {}
                Err(e) => {
                    let exists = c
                        .sftp
                        .stat(d.as_str())
                        .await
                        .is_ok_and(|a| a.attrs.file_type().is_dir());
                    if !exists {
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `body` to a new temp file beside `path` (making its directory when missing),
    /// fsynced where the server can, with mtime `created`; returns the temp name. The temp
    /// file is removed on failure.
    async fn write_temp(
        &self,
        c: &Conn,
        path: &str,
        body: PutBody<'_>,
        created: Option<SystemTime>,
        what: &str,
    ) -> Result<String, Failure> {
        let tmp = format!(
            "{path}.{:x}{:08x}.tmp",
            std::process::id(),
            rand::random::<u32>()
        );
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
        let handle = match c
            .sftp
            .open(tmp.as_str(), flags, FileAttributes::empty())
            .await
        {
            Ok(h) => h.handle,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                let dir = tmp.rsplit_once('/').map_or("", |(d, _)| d);
                self.make_dirs(c, dir).await?;
                c.sftp
                    .open(tmp.as_str(), flags, FileAttributes::empty())
                    .await?
                    .handle
            }
            Err(e) => return Err(e.into()),
        };
        let written = self.write_handle(c, &handle, body, created, what).await;
        let closed = c.sftp.close(handle).await;
        let r = written.and(closed.map(|_| ()).map_err(Failure::from));
        if let Err(e) = r {
            if !e.is_lost() {
                let _ = c.sftp.remove(tmp.as_str()).await;
            }
            return Err(e);
        }
        Ok(tmp)
    }

    /// Writes `body` into the open file in requests of the server's write size, a few in
    /// flight; a local file is read a request's worth at a time as the writes need it, so
    /// memory stays near the requests in flight (16 of 128 KiB on OpenSSH).
    async fn write_handle(
        &self,
        c: &Conn,
        handle: &str,
        body: PutBody<'_>,
        created: Option<SystemTime>,
        what: &str,
    ) -> Result<(), Failure> {
        let chunk = c.write_chunk_bytes;
        let in_flight = self.opts.write_concurrency.max(1);
        let writes: BoxStream<'_, Result<(u64, Vec<u8>), Failure>> = match body {
            PutBody::Bytes(data) => stream::iter((0..data.len()).step_by(chunk))
                .map(|off: usize| {
                    Ok((
                        off as u64,
                        data[off..(off + chunk).min(data.len())].to_vec(),
                    ))
                })
                .boxed(),
            PutBody::File(f) => f
                .pieces(chunk)
                .map_ok(|(at, piece)| (at, Vec::from(piece)))
                .map_err(Failure::Storage)
                .boxed(),
        };
        let r: Result<Vec<_>, Failure> = writes
            .map_ok(|(off, piece)| c.sftp.write(handle, off, piece).map_err(Failure::from))
            .try_buffer_unordered(in_flight)
            .try_collect()
            .await;
        if let Err(e) = r {
            return Err(self.no_space_or(c, e, body.len_bytes(), what).await);
        }
        if c.ext.fsync {
            c.sftp.fsync(handle).await.map_err(Failure::from)?;
        }
        if let Some(t) = created {
            let secs = t
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
                .unwrap_or(0);
            let attrs = FileAttributes {
                atime: Some(secs),
                mtime: Some(secs),
                ..FileAttributes::empty()
            };
            c.sftp.fsetstat(handle, attrs).await?;
        }
        Ok(())
    }

    /// SFTP v3 has no "disk full" status: OpenSSH answers ENOSPC with the generic failure.
    /// After such a failure, asks the file system (`statvfs@openssh.com`) whether the file
    /// still fits, and says `NoSpace` when it does not.
    async fn no_space_or(&self, c: &Conn, f: Failure, len: u64, what: &str) -> Failure {
        let io_failure = f.is_status(StatusCode::Failure)
            || f.lost_message().is_some_and(|m| m.contains("Failure"));
        if !io_failure || !c.ext.statvfs {
            return f;
        }
        let dir = if self.root.is_empty() {
            "."
        } else {
            self.root.as_str()
        };
        match c.sftp.statvfs(dir).await {
            Ok(v) if v.blocks_avail.saturating_mul(v.fragment_size.max(1)) < len => {
                Failure::Storage(StorageError::no_space(
                    self.location.clone(),
                    what.to_string(),
                ))
            }
            _ => f,
        }
    }

    async fn put_on(
        &self,
        c: &Conn,
        key: &LtxKey,
        body: PutBody<'_>,
        created: SystemTime,
    ) -> Result<(), Failure> {
        let path = self.key_path(key);
        let what = key.to_string();
        let tmp = self
            .write_temp(c, &path, body, Some(created), &what)
            .await?;
        if let Err(e) = c.rename_over(&tmp, &path).await {
            if !e.is_lost() {
                let _ = c.sftp.remove(tmp.as_str()).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Creates `path` from a fully written temp file by `link(2)` (or SFTP v3 rename, which
    /// also refuses an existing target), so the name appears whole or not at all and an
    /// existing file is never replaced.
    async fn create_on(&self, c: &Conn, rel: &str, data: &Bytes) -> Result<(), Failure> {
        let path = self.remote(rel);
        let tmp = self
            .write_temp(c, &path, PutBody::Bytes(data), None, rel)
            .await?;
        let linked: Result<(), Failure> = if c.ext.hardlink {
            let r = c.sftp.hardlink(tmp.as_str(), path.as_str()).await;
            let _ = c.sftp.remove(tmp.as_str()).await;
            r.map(|_| ()).map_err(Failure::from)
        } else {
            let r = c.sftp.rename(tmp.as_str(), path.as_str()).await;
            if r.is_err() {
                let _ = c.sftp.remove(tmp.as_str()).await;
            }
            r.map(|_| ()).map_err(Failure::from)
        };
        match linked {
            Err(e) if e.is_status(StatusCode::Failure) => {
                // OpenSSH answers EEXIST with the generic failure: look.
                match c.sftp.stat(path.as_str()).await {
                    Ok(_) => Err(Failure::Storage(StorageError::precondition(
                        self.location.clone(),
                        rel.to_string(),
                    ))),
                    Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    async fn list_on(&self, c: &Conn, level: Level) -> Result<Vec<LtxInfo>, Failure> {
        let dir = self.remote(&Layout::LtxDir.level_dir(level));
        let mut out: Vec<LtxInfo> = self
            .read_dir(c, &dir)
            .await?
            .into_iter()
            .filter(|(_, a)| a.permissions.is_none() || a.file_type().is_file())
            .filter_map(|(name, a)| {
                Some(LtxInfo {
                    key: LtxKey::parse_file_name(level, &name)?,
                    size_bytes: a.size.unwrap_or(0),
                    created: mtime(&a),
                })
            })
            .collect();
        out.sort_by_key(|i| (i.key.min, i.key.max));
        Ok(out)
    }

    /// `created` from the file's LTX header when it is one and agrees with the mtime to
    /// the second; `None` when the file is gone.
    async fn exact_time(&self, c: &Conn, info: LtxInfo) -> Result<Option<LtxInfo>, Failure> {
        let what = info.key.to_string();
        let n = (ltx::HEADER_SIZE as u64).min(info.size_bytes);
        let (handle, _) = match self.open_read(c, &self.key_path(&info.key)).await {
            Ok(h) => h,
            Err(e) if e.is_status(StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(e),
        };
        let head = self.read_range(c, &handle, 0..n, &what).await;
        let _ = c.sftp.close(handle).await;
        let header_time = ltx::Header::from_bytes(&head?)
            .ok()
            .and_then(|h| u64::try_from(h.timestamp_ms).ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let created = match header_time {
            Some(t) if whole_seconds(t) == whole_seconds(info.created) => t,
            _ => info.created,
        };
        Ok(Some(LtxInfo { created, ..info }))
    }

    /// The whole file at `path`, or `range` of it.
    async fn get_on(
        &self,
        c: &Conn,
        path: &str,
        what: &str,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, Failure> {
        let (handle, size) = self.open_read(c, path).await?;
        let r = match range {
            None => self.read_range(c, &handle, 0..size, what).await,
            Some(r) if r.start > r.end || r.end > size => Err(Failure::Permanent(format!(
                "range {}..{} outside file of {size} bytes",
                r.start, r.end
            ))),
            Some(r) => self.read_range(c, &handle, r, what).await,
        };
        let _ = c.sftp.close(handle).await;
        r.map(Bytes::from)
    }

    async fn delete_on(&self, c: &Conn, keys: &[LtxKey]) -> Result<(), Failure> {
        stream::iter(keys.to_vec())
            .map(|k| async move {
                match c.sftp.remove(self.key_path(&k)).await {
                    Ok(_) => Ok(()),
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(()),
                    Err(e) => Err(Failure::from(e)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn list_v3_on(&self, c: &Conn) -> Result<Vec<V3File>, Failure> {
        let mut out = Vec::new();
        for (generation, _) in self.read_dir(c, &self.remote(v3::GENERATIONS_DIR)).await? {
            if !v3::is_generation_name(&generation) {
                continue;
            }
            for dir in [v3::snapshots_dir(&generation), v3::wal_dir(&generation)] {
                for (name, a) in self.read_dir(c, &self.remote(&dir)).await? {
                    let Some((generation, kind)) = v3::parse_path(&format!("{dir}/{name}")) else {
                        continue;
                    };
                    if a.permissions.is_some() && !a.file_type().is_file() {
                        continue;
                    }
                    out.push(V3File {
                        generation,
                        kind,
                        size_bytes: a.size.unwrap_or(0),
                        modified: mtime(&a),
                    });
                }
            }
        }
        Ok(out)
    }
}

fn mtime(a: &FileAttributes) -> SystemTime {
    a.mtime
        .map(|s| UNIX_EPOCH + Duration::from_secs(u64::from(s)))
        .unwrap_or(UNIX_EPOCH)
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[async_trait]
impl ReplicaStore for SftpStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let what = format!("listing {}/", Layout::LtxDir.level_dir(level));
        self.run(&what, Retry::Idempotent, |c| async move {
            self.list_on(&c, level).await
        })
        .await
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let what = format!(
            "reading the timestamps of {}/",
            Layout::LtxDir.level_dir(level)
        );
        self.run(&what, Retry::Idempotent, |c| async move {
            let files = self.list_on(&c, level).await?;
            let exact: Vec<Option<LtxInfo>> = stream::iter(files)
                .map(|info| {
                    let c = c.clone();
                    async move { self.exact_time(&c, info).await }
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            Ok(exact.into_iter().flatten().collect())
        })
        .await
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        let what = key.to_string();
        let what = what.as_str();
        self.run(what, Retry::Idempotent, |c| {
            let range = range.clone();
            async move { self.get_on(&c, &self.key_path(key), what, range).await }
        })
        .await
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let what = key.to_string();
        self.run(&what, Retry::Idempotent, |c| {
            let data = data.clone();
            async move { self.put_on(&c, key, PutBody::Bytes(&data), created).await }
        })
        .await
    }

    /// `put`'s temp file written from the local file in pieces: the same rename, fsync
    /// and mtime, a few MiB in memory whatever the file's size.
    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let local = LocalFile::new(&self.location, key, file, len_bytes)?;
        let what = key.to_string();
        self.run(&what, Retry::Idempotent, |c| {
            let local = &local;
            async move { self.put_on(&c, key, PutBody::File(local), created).await }
        })
        .await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let what = match keys {
            [k] => format!("deleting {k}"),
            _ => format!("deleting {} files", keys.len()),
        };
        self.run(&what, Retry::Idempotent, |c| async move {
            self.delete_on(&c, keys).await
        })
        .await
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        Ok(self)
    }

    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        Ok(self)
    }
}

/// Named objects: written like LTX files (temp file, rename); a conditional create is a
/// hard link of the temp file. No conditional replace: SFTP has no lock to make
/// read-compare-replace atomic, so what needs one (leases, fenced puts) is refused.
#[async_trait]
impl NamedStore for SftpStore {
    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.run(name, Retry::Once, |c| {
            let data = data.clone();
            async move { self.create_on(&c, name, &data).await }
        })
        .await?;
        Ok(ETag::of_content(&data))
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        Err(no_conditional_replace(&self.location, name))
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        let _ = (data, etag);
        Err(no_conditional_replace(&self.location, name))
    }

    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let _ = (data, created);
        Err(no_conditional_replace(&self.location, &key.to_string()))
    }

    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        let path = self.remote(name);
        self.run(name, Retry::Idempotent, |c| {
            let (data, path) = (data.clone(), path.clone());
            async move {
                // No mtime of ours: the server's clock is what `head_name` must report.
                let tmp = self
                    .write_temp(&c, &path, PutBody::Bytes(&data), None, name)
                    .await?;
                if let Err(e) = c.rename_over(&tmp, &path).await {
                    if !e.is_lost() {
                        let _ = c.sftp.remove(tmp.as_str()).await;
                    }
                    return Err(e);
                }
                Ok(())
            }
        })
        .await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let path = self.remote(name);
        self.run(name, Retry::Idempotent, |c| {
            let (range, path) = (range.clone(), path.clone());
            async move { self.get_on(&c, &path, name, range).await }
        })
        .await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let path = self.remote(name);
        self.run(name, Retry::Idempotent, |c| {
            let path = path.clone();
            async move {
                let a = c.sftp.stat(path.as_str()).await.map_err(Failure::from)?;
                Ok(NamedObject {
                    size_bytes: a.attrs.size.unwrap_or(0),
                    modified: mtime(&a.attrs),
                })
            }
        })
        .await
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        let path = self.remote(name);
        self.run(name, Retry::Idempotent, |c| {
            let path = path.clone();
            async move {
                match c.sftp.remove(path.as_str()).await {
                    Ok(_) => Ok(()),
                    Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(()),
                    Err(e) => Err(Failure::from(e)),
                }
            }
        })
        .await
    }
}

#[async_trait]
impl V3Store for SftpStore {
    async fn list_v3(&self) -> Result<Vec<V3File>, StorageError> {
        let what = format!("listing {}/", v3::GENERATIONS_DIR);
        self.run(&what, Retry::Idempotent, |c| async move {
            self.list_v3_on(&c).await
        })
        .await
    }

    async fn get_v3(&self, file: &V3File) -> Result<Bytes, StorageError> {
        let rel = file.path();
        self.run(&rel, Retry::Idempotent, |c| {
            let rel = rel.clone();
            async move {
                self.read_file(&c, &self.remote(&rel), &rel)
                    .await
                    .map(Bytes::from)
            }
        })
        .await
    }

    async fn get_v3_range(&self, file: &V3File, range: Range<u64>) -> Result<Bytes, StorageError> {
        let rel = file.path();
        self.run(&rel, Retry::Idempotent, |c| {
            let (rel, range) = (rel.clone(), range.clone());
            async move { self.get_on(&c, &self.remote(&rel), &rel, Some(range)).await }
        })
        .await
    }
}

/// The answer to a compare-and-swap on SFTP.
fn no_conditional_replace(location: &str, what: &str) -> StorageError {
    StorageError::unsupported(
        location,
        what,
        "conditional writes are not supported by this backend",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(path: &str) -> SftpStore {
        let mut o = SftpOptions::new("h", 22, "u", path);
        o.password = Some("pw".into());
        SftpStore::new(o).unwrap()
    }

    #[test]
    fn keys_are_spelled_by_the_layout_under_the_root() {
        let k = LtxKey::new(
            Level::SNAPSHOT,
            ltx::TxId::new(1).unwrap(),
            ltx::TxId::new(6).unwrap(),
        );
        let name = "ltx/9/0000000000000001-0000000000000006.ltx";
        assert_eq!(store("/srv/db/").key_path(&k), format!("/srv/db/{name}"));
        assert_eq!(
            store("backups/db").key_path(&k),
            format!("backups/db/{name}")
        );
        assert_eq!(store("").key_path(&k), name);
        assert_eq!(store("/").key_path(&k), format!("/{name}"));
        assert_eq!(store("/srv").remote("lock.json"), "/srv/lock.json");
    }

    #[test]
    fn relative_names_only() {
        use crate::storage::check_aux_name;
        let s = store("/srv");
        for bad in ["", "../x", "a//b", "/abs", "a/./b"] {
            assert!(check_aux_name(&s.location, bad).is_err(), "{bad}");
        }
        check_aux_name(&s.location, "a/lock.json").unwrap();
    }
}
