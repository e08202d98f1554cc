//! The NATS backend: a replica in a NATS JetStream object store bucket.
//!
//! Owns: mapping [`ReplicaStore`] calls onto objects named `<prefix>/ltx/<level>/<min>-<max>.ltx`
//! (Litestream's nats layout, [`Layout::LtxDir`]; Litestream always writes at the bucket's
//! root, so its replicas have no prefix), with the creation time in the object's
//! `Litestream-Timestamp` header (RFC 3339 with nanoseconds, as Litestream writes it;
//! the object's modification time where a header is missing); one client per store,
//! connected on the first call, which reconnects by itself after the server goes away
//! (calls made meanwhile fail `Transient` after the request timeout); named objects
//! outside the levels (check's scratch object). `config` holds [`NatsOptions`] and the
//! login; the error texts of the client are scrubbed of secrets before they are kept.
//!
//! What a call costs (NATS round trips on one connection; JetStream chunks are 128 KiB):
//! - `put`: one request for the existing object's info, one acknowledged publish per
//!   chunk (a small LTX file: one), one for the metadata; replacing an object adds a purge
//!   of its old chunks. So 3 round trips for an L0 upload. A large file's chunks are read
//!   from the local file as they go (`put_file`); a put that fails part-way leaves the
//!   chunks it published, unreferenced, as the object store's own put does.
//! - `list`: one consumer created on the bucket's metadata subjects, which then delivers
//!   one message per object of the whole bucket (every level, every prefix: as
//!   Litestream, the object store has no listing by prefix).
//! - `get`: the info request, one consumer created, then every chunk from the start of
//!   the object: the object store has no ranged read, so a range is read by skipping
//!   the bytes before it (they are still sent). Restores therefore read each file in one
//!   range ([`ReplicaStore::restore_chunk_bytes`] is unbounded), streamed as it arrives.
//! - `delete`: per object, the info request, the metadata publish, a purge.
//!
//! Does not: create the bucket (Litestream does not either); conditional creates or
//! replaces (the object store's put has no precondition), so leases and fenced uploads
//! are refused with a clear error; read Litestream 0.3 generations (Litestream's nats
//! client does not either).
//!
//! Fed by replicate/restore through `dyn ReplicaStore`; feeds `async-nats` (the NATS
//! maintainers' client).

mod config;

use std::ops::Range;
use std::time::SystemTime;

use async_nats::jetstream::object_store::{
    GetErrorKind, InfoErrorKind, ObjectInfo, ObjectMetadata, ObjectStore,
};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use ltx::Level;
use tokio::io::AsyncReadExt;

use super::layout::{Layout, LtxInfo, LtxKey};
use super::objstore::{format_timestamp, parse_timestamp};
use super::{
    ByteStream, ETag, LocalFile, NamedObject, NamedStore, PutBody, ReplicaStore, StorageError,
};
pub use config::{NatsOptions, DEFAULT_URL};

/// The object header holding a file's creation time (Litestream's name).
pub const TIMESTAMP_HEADER: &str = "Litestream-Timestamp";

/// Bytes read from an object per piece of a streamed get.
const READ_PIECE_BYTES: usize = 256 << 10;

/// A replica in a NATS JetStream object store bucket.
pub struct NatsStore {
    opts: NatsOptions,
    location: String,
    secrets: Vec<String>,
    bucket: tokio::sync::Mutex<Option<ObjectStore>>,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl NatsStore {
    /// Checks the options; no connection is made until the first call. Errors are
    /// `Permanent` and name the replica.
    pub fn new(opts: NatsOptions) -> Result<NatsStore, StorageError> {
        opts.check()?;
        Ok(NatsStore {
            location: opts.location(),
            secrets: opts.secrets(),
            opts,
            bucket: tokio::sync::Mutex::new(None),
        })
    }

    /// The bucket's handle, connecting first if there is none yet. A failed connect or
    /// lookup is tried again on the next call.
    async fn bucket(&self) -> Result<ObjectStore, StorageError> {
        let mut slot = self.bucket.lock().await;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = self.opts.open().await?;
        *slot = Some(b.clone());
        Ok(b)
    }

    /// The object name of `rel` (relative to the replica root).
    fn name(&self, rel: &str) -> String {
        match self.opts.prefix.as_str() {
            "" => rel.to_string(),
            p => format!("{p}/{rel}"),
        }
    }

    fn key_name(&self, key: &LtxKey) -> String {
        self.name(&Layout::LtxDir.key_path(key))
    }

    /// `e` classified. A client whose connection task is gone (its runtime ended: a
    /// store used from one runtime after another) is forgotten, so the next call connects
    /// again instead of failing for ever.
    fn err(&self, what: &str, e: &(dyn std::error::Error + 'static)) -> StorageError {
        let text = error_chain(e, &self.secrets);
        if text.contains("channel closed") {
            if let Ok(mut slot) = self.bucket.try_lock() {
                slot.take();
            }
        }
        classify_text(&self.location, what, text)
    }

    /// Stores `body` at object `name` with `headers`, replacing what is there. The
    /// metadata is published after every chunk: readers see the old object or the new one.
    /// The object store reads its chunks from a reader: a local file is read in pieces as
    /// the chunks go out (issue 27).
    async fn put_at(
        &self,
        name: &str,
        body: PutBody<'_>,
        headers: Option<HeaderMap>,
    ) -> Result<(), StorageError> {
        let b = self.bucket().await?;
        let meta = ObjectMetadata {
            name: name.to_string(),
            headers,
            ..Default::default()
        };
        let put = match body {
            PutBody::Bytes(data) => b.put(meta, &mut data.as_ref()).await,
            PutBody::File(f) => {
                b.put(meta, &mut tokio_util::io::StreamReader::new(f.io_pieces()))
                    .await
            }
        };
        put.map(|_| ()).map_err(|e| body.failed(self.err(name, &e)))
    }

    /// The object's info, or `NotFound` (also for a deleted one).
    async fn info(&self, name: &str) -> Result<ObjectInfo, StorageError> {
        let b = self.bucket().await?;
        match b.info(name).await {
            Ok(i) if !i.deleted => Ok(i),
            Ok(_) => Err(StorageError::not_found(&self.location, name)),
            Err(e) if e.kind() == InfoErrorKind::NotFound => {
                Err(StorageError::not_found(&self.location, name))
            }
            Err(e) => Err(self.err(name, &e)),
        }
    }

    /// The bytes of `range` (whole object for `None`) as a stream: the object is read from
    /// its start and the bytes before the range dropped. A range past the end is
    /// `Permanent`.
    async fn open_range(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream, StorageError> {
        let b = self.bucket().await?;
        let obj = match b.get(name).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => {
                return Err(StorageError::not_found(&self.location, name))
            }
            Err(e) => return Err(self.err(name, &e)),
        };
        let size = obj.info().size as u64;
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(StorageError::permanent(
                &self.location,
                name,
                format!(
                    "bytes {}..{} asked for, the object has {size}",
                    range.start, range.end
                ),
            ));
        }
        let location = self.location.clone();
        let secrets = self.secrets.clone();
        let name = name.to_string();
        let stall = self.opts.timeout;
        let state = (obj, range.start, range.end, 0u64);
        let s = futures::stream::try_unfold(state, move |(mut obj, skip, end, mut at)| {
            let (location, secrets, name) = (location.clone(), secrets.clone(), name.clone());
            async move {
                while at < end {
                    let want = (end - at).min(READ_PIECE_BYTES as u64) as usize;
                    let mut buf = BytesMut::with_capacity(want);
                    let n = tokio::time::timeout(stall, obj.read_buf(&mut buf))
                        .await
                        .map_err(|_| {
                            StorageError::transient(
                                &location,
                                &name,
                                format!("no data for {stall:?}; read stalled"),
                            )
                        })?
                        .map_err(|e| classify_text(&location, &name, error_chain(&e, &secrets)))?;
                    if n == 0 {
                        return Err(StorageError::transient(
                            location,
                            name,
                            format!("the object ended at byte {at}, before {end}"),
                        ));
                    }
                    let piece_start = at;
                    at += n as u64;
                    let mut piece = buf.freeze();
                    if at > end {
                        piece.truncate((end - piece_start) as usize);
                        at = end;
                    }
                    if at <= skip {
                        continue;
                    }
                    if piece_start < skip {
                        piece = piece.slice((skip - piece_start) as usize..);
                    }
                    return Ok(Some((piece, (obj, skip, end, at))));
                }
                Ok(None)
            }
        });
        Ok(s.boxed())
    }

    async fn read_range(
        &self,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, StorageError> {
        let mut s = self.open_range(name, range).await?;
        let mut out = BytesMut::new();
        while let Some(piece) = s.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out.freeze())
    }

    /// Every live object of the bucket (one consumer over the metadata subjects).
    async fn list_all(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        let b = self.bucket().await?;
        let what = "bucket listing";
        let mut l = b.list().await.map_err(|e| self.err(what, &e))?;
        let mut out = Vec::new();
        // The listing ends when the server says nothing is pending; a consumer created
        // while the server recovers its store after a restart was seen never to say so
        // (a restore hung for minutes): no entry within the request timeout is a stall.
        loop {
            let next = tokio::time::timeout(self.opts.timeout, l.next()).await;
            match next {
                Ok(Some(info)) => out.push(info.map_err(|e| self.err(what, &e))?),
                Ok(None) => return Ok(out),
                Err(_) => {
                    return Err(StorageError::transient(
                        &self.location,
                        what,
                        format!("no entry for {:?}; listing stalled", self.opts.timeout),
                    ))
                }
            }
        }
    }
}

/// The creation time an object's info records: its `Litestream-Timestamp` header, else
/// its modification time.
fn created_of(info: &ObjectInfo) -> SystemTime {
    let header = info.headers.as_ref().and_then(|h| {
        h.iter()
            .find(|(k, _)| k.to_string().eq_ignore_ascii_case(TIMESTAMP_HEADER))
            .and_then(|(_, v)| v.first())
            .and_then(|v| parse_timestamp(v.as_str()))
    });
    header
        .or_else(|| info.modified.map(SystemTime::from))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `text` with every secret replaced by `***`.
fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

/// An error and its causes on one line (`a: b: c`), scrubbed of secrets.
fn error_chain(e: &(dyn std::error::Error + 'static), secrets: &[String]) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = c.source();
    }
    scrub(&text, secrets)
}

/// A failure of the client from its text (the client's error kinds are per call and
/// coarse): permissions are `PermissionDenied`, a full stream `NoSpace`, a bad name
/// `Permanent`, everything else (timeouts, lost connections, server errors) `Transient`.
fn classify_text(location: &str, what: &str, text: String) -> StorageError {
    let t = text.to_ascii_lowercase();
    if t.contains("permission") || t.contains("authorization") {
        StorageError::permission_denied(location, what, text)
    } else if t.contains("insufficient resources") || t.contains("maximum bytes") {
        StorageError::no_space(location, what).with_detail(text)
    } else if t.contains("invalid object name") || t.contains("invalid bucket") {
        StorageError::permanent(location, what, text)
    } else {
        StorageError::transient(location, what, text)
    }
}

fn timestamp_headers(created: SystemTime) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(TIMESTAMP_HEADER, format_timestamp(created).as_str());
    h
}

#[async_trait]
impl ReplicaStore for NatsStore {
    fn location(&self) -> &str {
        &self.location
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let dir = self.name(&Layout::LtxDir.level_dir(level));
        let mut out: Vec<LtxInfo> = self
            .list_all()
            .await?
            .iter()
            .filter_map(|info| {
                let file = info.name.strip_prefix(&dir)?.strip_prefix('/')?;
                let key = LtxKey::parse_file_name(level, file)?;
                Some(LtxInfo {
                    key,
                    size_bytes: info.size as u64,
                    created: created_of(info),
                })
            })
            .collect();
        out.sort_by_key(|i| (i.key.min, i.key.max));
        Ok(out)
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.read_range(&self.key_name(key), range).await
    }

    async fn get_stream(
        &self,
        key: &LtxKey,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.open_range(&self.key_name(key), Some(range)).await
    }

    /// Unbounded: every ranged read costs the bytes before the range, so a restore reads
    /// each file in one streamed range.
    fn restore_chunk_bytes(&self) -> u64 {
        u64::MAX
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        self.put_at(
            &self.key_name(key),
            PutBody::Bytes(&data),
            Some(timestamp_headers(created)),
        )
        .await
    }

    /// `put`, the object's chunks read from the local file as they go.
    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let local = LocalFile::new(&self.location, key, file, len_bytes)?;
        self.put_at(
            &self.key_name(key),
            PutBody::File(&local),
            Some(timestamp_headers(created)),
        )
        .await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        for k in keys {
            self.delete_object(&self.key_name(k)).await?;
        }
        Ok(())
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        Ok(self)
    }
}

impl NatsStore {
    async fn delete_object(&self, name: &str) -> Result<(), StorageError> {
        use async_nats::jetstream::object_store::DeleteErrorKind;
        let b = self.bucket().await?;
        match b.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(name, &e)),
        }
    }

    fn no_conditional(&self, name: &str) -> StorageError {
        StorageError::unsupported(
            &self.location,
            name,
            "the NATS object store has no conditional writes (no create-if-absent or \
             replace-if-unchanged), so leases and fenced uploads cannot be used on a nats replica",
        )
    }
}

#[async_trait]
impl NamedStore for NatsStore {
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.put_at(&self.name(name), PutBody::Bytes(&data), None)
            .await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.read_range(&self.name(name), range).await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        super::check_aux_name(&self.location, name)?;
        let info = self.info(&self.name(name)).await?;
        Ok(NamedObject {
            size_bytes: info.size as u64,
            modified: info
                .modified
                .map(SystemTime::from)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        super::check_aux_name(&self.location, name)?;
        self.delete_object(&self.name(name)).await
    }

    async fn create_name(&self, name: &str, _data: Bytes) -> Result<ETag, StorageError> {
        super::check_aux_name(&self.location, name)?;
        Err(self.no_conditional(name))
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        Err(self.no_conditional(name))
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        _data: Bytes,
        _etag: &ETag,
    ) -> Result<ETag, StorageError> {
        Err(self.no_conditional(name))
    }

    async fn put_if_absent(
        &self,
        key: &LtxKey,
        _data: Bytes,
        _created: SystemTime,
    ) -> Result<(), StorageError> {
        Err(self.no_conditional(&self.key_name(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx::TxId;
    use std::time::Duration;

    fn store(prefix: &str) -> NatsStore {
        let mut o = NatsOptions::new("nats://127.0.0.1:4222", "backups");
        o.prefix = prefix.into();
        o.password = Some("hunter2".into());
        o.username = Some("bob".into());
        NatsStore::new(o).unwrap()
    }

    #[test]
    fn names_follow_litestreams_layout_under_the_prefix() {
        let k = LtxKey::new(
            Level::SNAPSHOT,
            TxId::new(1).unwrap(),
            TxId::new(6).unwrap(),
        );
        assert_eq!(
            store("").key_name(&k),
            "ltx/9/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(
            store("db/x").key_name(&k),
            "db/x/ltx/9/0000000000000001-0000000000000006.ltx"
        );
        assert_eq!(store("db/x").name("lock.json"), "db/x/lock.json");
        assert_eq!(store("").location(), "nats://127.0.0.1:4222/backups");
        assert_eq!(
            store("db/x").location(),
            "nats://127.0.0.1:4222/backups/db/x"
        );
    }

    #[test]
    fn bad_options_are_refused_and_secrets_never_print() {
        for (bucket, prefix) in [
            ("", ""),
            ("a.b", ""),
            ("a/b", ""),
            ("ok", "/x"),
            ("ok", "x//y"),
            ("ok", "../x"),
        ] {
            let mut o = NatsOptions::new("", bucket);
            o.prefix = prefix.into();
            assert!(NatsStore::new(o).is_err(), "{bucket:?} {prefix:?}");
        }
        let mut o = NatsOptions::new("", "ok");
        o.client_cert = Some("c.pem".into());
        assert!(NatsStore::new(o).is_err());
        let s = store("");
        let shown = format!("{s:?} {:?}", s.opts);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(scrub("bad hunter2 x", &s.secrets), "bad *** x");
        assert_eq!(
            NatsOptions::new("", "b").location(),
            "nats://127.0.0.1:4222/b"
        );
    }

    #[test]
    fn created_is_the_header_else_the_modification_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let mut info = ObjectInfo {
            name: "x".into(),
            description: None,
            metadata: Default::default(),
            headers: Some(timestamp_headers(t)),
            options: None,
            bucket: "b".into(),
            nuid: String::new(),
            size: 0,
            chunks: 0,
            modified: None,
            digest: None,
            deleted: false,
        };
        assert_eq!(created_of(&info), t);
        let mut h = HeaderMap::new();
        h.insert("litestream-timestamp", "2023-11-14T22:13:20.5Z");
        info.headers = Some(h);
        assert_eq!(
            created_of(&info),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
        );
        info.headers = None;
        assert_eq!(created_of(&info), SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn failures_are_classified_from_their_text() {
        let k = |t: &str| classify_text("loc", "x", t.into()).kind();
        use super::super::ErrorKind;
        assert_eq!(
            k("nats: Permissions Violation for Publish"),
            ErrorKind::PermissionDenied
        );
        assert_eq!(k("insufficient resources"), ErrorKind::NoSpace);
        assert_eq!(k("timed out"), ErrorKind::Transient);
        assert_eq!(k("invalid object name"), ErrorKind::Permanent);
    }
}
