//! Client-side encryption of a replica with age (issue 24): a wrapper store that encrypts
//! every LTX file it writes and decrypts what it reads, so the storage provider holds only
//! ciphertext.
//!
//! Owns: the keys ([`AgeKeys`]: X25519 identities and recipients, as Litestream 0.3 had
//! them), sealing (every `put` and fenced `put_if_absent`: L0 files, compactions,
//! snapshots) and opening (whole `get`s, ranged `get`s mapped onto age's 64 KiB chunks,
//! Litestream 0.3 `generations/` files, which 0.3 wrote as age(lz4(data))), and the
//! listed sizes: callers see plaintext sizes, as if the replica were not encrypted.
//!
//! Does not: encrypt named objects. The lease (`lock.json`) and `check`'s scratch object
//! stay plaintext: they hold no database content, and a lease must stay readable to
//! every replicator competing for it. Nor does it decide anything about keys: the CLI
//! parses them from the config.
//!
//! Format: each object is a standard age v1 file (`age -d -i key.txt` decrypts one), so
//! it starts with `age-encryption.org/v1` where an LTX file starts with `LTX1`: a reader
//! without the keys (Litestream 0.5, or this tool without `age:`) stops at the magic
//! check instead of restoring garbage. The payload after the header and its 16-byte nonce
//! is age's STREAM: 64 KiB plaintext chunks, each sealed with a 16-byte Poly1305 tag, so
//! any tampering fails authentication and nothing unauthenticated is returned.
//!
//! Sizes: the header's length varies (one stanza per recipient plus age's random
//! "grease" stanza), so a plaintext size follows from a listed size only once the
//! header's length is known. Listing reads each object's header once (one ranged GET of
//! its first KiB), then remembers it: objects are immutable under their key. Objects
//! this store wrote itself are remembered from the `put`, so a replicator pays only for
//! what it finds at start. A restore pays one small GET per listed file.
//!
//! Ranged reads: plaintext bytes `a..b` lie in chunks `a / 64 KiB ..= (b - 1) / 64 KiB`,
//! which start at `header + nonce + i * (64 KiB + 16)`: one ranged GET of those chunks,
//! decrypted with the remembered header. A ranged read of an object not listed first is
//! one whole GET.
//!
//! Plaintext objects found in an encrypted replica (written before `age:` was added)
//! are read as they are, so encryption can be turned on for an existing replica; later
//! compactions and snapshots replace them with encrypted ones.

// Litestream 0.3 encrypted to X25519 keys, which age 0.13 marks deprecated in favour of
// post-quantum ones: compatibility needs them.
#![allow(deprecated)]

use std::collections::HashMap;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use ltx::Level;

use super::layout::v3::V3File;
use super::{
    ETag, ErrorKind, LtxInfo, LtxKey, NamedObject, NamedStore, ReplicaStore, StorageError, V3Store,
};

/// What every age v1 file starts with.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// Plaintext bytes per STREAM chunk.
const CHUNK_BYTES: u64 = 64 << 10;
/// Ciphertext bytes per full chunk: the plaintext and its Poly1305 tag.
const SEALED_CHUNK_BYTES: u64 = CHUNK_BYTES + 16;
/// Bytes read first to find a header's end; most headers (a few recipients) fit.
const FIRST_HEAD_READ: u64 = 1024;
/// No header we accept is longer (age's own limit on identities is similar in spirit).
const MAX_HEAD_BYTES: u64 = 64 << 10;
/// Headers fetched at once while listing.
const HEAD_READS_IN_FLIGHT: usize = 16;
/// Above this many bytes, sealing and opening run on a blocking thread.
const BLOCKING_BYTES: usize = 1 << 20;
/// Remembered headers before the memory is dropped and rebuilt from later listings.
const MAX_REMEMBERED: usize = 200_000;

/// A key that could not be parsed: which list, and its position there. Never the key.
#[derive(Debug, thiserror::Error)]
#[error("{list}[{index}]: {what}")]
pub struct AgeKeyError {
    /// `identities` or `recipients`.
    pub list: &'static str,
    pub index: usize,
    pub what: String,
}

/// The identities (to decrypt) and recipients (to encrypt to) of one replica.
pub struct AgeKeys {
    identities: Vec<age::x25519::Identity>,
    recipients: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AgeKeys {{ {} identities, {} recipients }}",
            self.identities.len(),
            self.recipients.len()
        )
    }
}

impl AgeKeys {
    /// Parses keys as Litestream 0.3 did: each entry of `identities` holds one or more
    /// `AGE-SECRET-KEY-1...` lines, each of `recipients` one or more `age1...` lines
    /// (blank lines and `#` comments ignored, so a key file's text can be given whole).
    /// New objects are encrypted to every recipient and to every identity's own public
    /// key, so a replicator can always read back what it wrote. Entries that hold no key
    /// are errors, and no error ever carries key material.
    pub fn parse(identities: &[&str], recipients: &[&str]) -> Result<AgeKeys, AgeKeyError> {
        let mut keys = AgeKeys {
            identities: Vec::new(),
            recipients: Vec::new(),
        };
        for (index, text) in identities.iter().enumerate() {
            let err = |what: &str| AgeKeyError {
                list: "identities",
                index,
                what: what.to_string(),
            };
            let mut found = 0;
            for line in key_lines(text) {
                let id = age::x25519::Identity::from_str(line).map_err(|_| {
                    err("not an age X25519 identity (a line `AGE-SECRET-KEY-1...`, as age-keygen writes)")
                })?;
                keys.identities.push(id);
                found += 1;
            }
            if found == 0 {
                return Err(err("holds no identity"));
            }
        }
        for (index, text) in recipients.iter().enumerate() {
            let err = |what: &str| AgeKeyError {
                list: "recipients",
                index,
                what: what.to_string(),
            };
            let mut found = 0;
            for line in key_lines(text) {
                let r = age::x25519::Recipient::from_str(line)
                    .map_err(|_| err("not an age X25519 recipient (a public key `age1...`)"))?;
                keys.recipients.push(r);
                found += 1;
            }
            if found == 0 {
                return Err(err("holds no recipient"));
            }
        }
        Ok(keys)
    }

    /// Whether these keys can decrypt (at least one identity).
    pub fn can_decrypt(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Whether these keys can encrypt (at least one recipient or identity).
    pub fn can_encrypt(&self) -> bool {
        !self.identities.is_empty() || !self.recipients.is_empty()
    }

    /// The recipients new objects are encrypted to: the configured ones, then each
    /// identity's own public key, without duplicates.
    fn all_recipients(&self) -> Vec<age::x25519::Recipient> {
        let mut out: Vec<age::x25519::Recipient> = Vec::new();
        let own = self.identities.iter().map(|i| i.to_public());
        for r in self.recipients.iter().cloned().chain(own) {
            if !out.iter().any(|o| o.to_string() == r.to_string()) {
                out.push(r);
            }
        }
        out
    }

    /// `plain` as an age file encrypted to every recipient of the keys, and the length of
    /// its header and nonce.
    pub fn seal(&self, plain: &[u8]) -> io::Result<(Vec<u8>, u64)> {
        let recipients = self.all_recipients();
        let enc =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
        let chunks = plain.len() as u64 / CHUNK_BYTES + 1;
        let mut out = Vec::with_capacity(plain.len() + 16 * chunks as usize + 1024);
        let mut w = enc.wrap_output(&mut out)?;
        w.write_all(plain)?;
        w.finish()?;
        let head = match head_len(&out) {
            Head::Sealed(n) => n,
            _ => return Err(io::Error::other("age: sealed output has no header")),
        };
        Ok((out, head))
    }

    /// [`AgeKeys::seal`] of the first `len_bytes` bytes of `src`, read in pieces at their
    /// offsets and sealed into an unnamed temp file in the system temp directory
    /// (`TMPDIR`): that file, its length, and its header and nonce. Memory does not
    /// follow the size (issue 27).
    pub fn seal_file(
        &self,
        src: &std::fs::File,
        len_bytes: u64,
    ) -> io::Result<(std::fs::File, u64, Bytes)> {
        use crate::platform::FileExt;
        let recipients = self.all_recipients();
        let enc =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
        let mut tmp = tempfile::tempfile()?;
        {
            let out = io::BufWriter::with_capacity(1 << 20, &mut tmp);
            let mut w = enc.wrap_output(out)?;
            let mut buf = vec![0u8; (1usize << 20).min(len_bytes as usize)];
            let mut at = 0u64;
            while at < len_bytes {
                let n = buf.len().min((len_bytes - at) as usize);
                src.read_exact_at(&mut buf[..n], at)?;
                w.write_all(&buf[..n])?;
                at += n as u64;
            }
            w.finish()?.into_inner().map_err(|e| e.into_error())?;
        }
        let sealed_len = tmp.seek(SeekFrom::End(0))?;
        let mut want = 1024u64;
        loop {
            let mut prefix = vec![0u8; want.min(sealed_len) as usize];
            tmp.read_exact_at(&mut prefix, 0)?;
            match head_len(&prefix) {
                Head::Sealed(h) => {
                    return Ok((tmp, sealed_len, Bytes::from(prefix).slice(..h as usize)))
                }
                Head::NeedMore if want < sealed_len => want *= 4,
                _ => return Err(io::Error::other("age: sealed output has no header")),
            }
        }
    }

    /// The plaintext of one whole age file.
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, Refusal> {
        let mut r = self.decryptor(Cursor::new(sealed))?;
        let mut out = Vec::with_capacity(sealed.len());
        r.read_to_end(&mut out).map_err(Refusal::from_io)?;
        Ok(out)
    }

    fn decryptor<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>, Refusal> {
        if self.identities.is_empty() {
            return Err(Refusal::NoIdentity);
        }
        let d = age::Decryptor::new(input).map_err(Refusal::from_decrypt)?;
        d.decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(Refusal::from_decrypt)
    }
}

/// The non-blank, non-comment lines of a key entry, trimmed.
fn key_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Why an object could not be decrypted, worded for the user; never key material.
#[derive(Debug)]
enum Refusal {
    NoIdentity,
    NoMatchingIdentity,
    Tampered(&'static str),
    Io(io::Error),
}

impl Refusal {
    fn from_decrypt(e: age::DecryptError) -> Refusal {
        match e {
            age::DecryptError::NoMatchingKeys => Refusal::NoMatchingIdentity,
            age::DecryptError::InvalidHeader => Refusal::Tampered("its age header is damaged"),
            age::DecryptError::InvalidMac => {
                Refusal::Tampered("its age header fails authentication (altered or damaged)")
            }
            age::DecryptError::Io(e) => Refusal::from_io(e),
            _ => Refusal::Tampered("it fails age decryption (altered or damaged)"),
        }
    }

    fn from_io(e: io::Error) -> Refusal {
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Refusal::Tampered(
                "its ciphertext fails authentication (altered, damaged or truncated)",
            ),
            _ => Refusal::Io(e),
        }
    }

    fn into_error(self, location: &str, what: &str) -> StorageError {
        let detail = match self {
            Refusal::NoIdentity => {
                "the replica is age-encrypted and no age identity is configured for it (add `age: identities` or `identity-file`)".to_string()
            }
            Refusal::NoMatchingIdentity => {
                "the replica is age-encrypted and none of the configured age identities can decrypt it (wrong identity?)".to_string()
            }
            Refusal::Tampered(why) => format!("rejected: {why}"),
            Refusal::Io(e) => format!("age decryption: {e}"),
        };
        StorageError::permanent(location.to_string(), what.to_string(), detail)
    }
}

/// What the start of an object says about it.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not an age file: stored as plaintext.
    Plain,
    /// An age file whose header and nonce take this many bytes.
    Sealed(u64),
    /// An age file whose header does not end within the bytes given.
    NeedMore,
    /// An age file whose header cannot be parsed.
    Bad,
}

fn head_len(prefix: &[u8]) -> Head {
    let n = prefix.len().min(AGE_MAGIC.len());
    if prefix[..n] != AGE_MAGIC[..n] {
        return Head::Plain;
    }
    let mut c = Cursor::new(prefix);
    match age::Decryptor::new(&mut c) {
        Ok(_) => Head::Sealed(c.position()),
        Err(age::DecryptError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Head::NeedMore,
        Err(_) => Head::Bad,
    }
}

/// The plaintext size of an age file of `sealed` bytes whose header and nonce take
/// `head` bytes, or `None` if no age file has those sizes.
fn plain_len(sealed: u64, head: u64) -> Option<u64> {
    let payload = sealed.checked_sub(head)?;
    if payload < 16 {
        return None;
    }
    let chunks = payload.div_ceil(SEALED_CHUNK_BYTES);
    Some(payload - 16 * chunks)
}

/// What is remembered of one object: its size as stored and, if it is an age file, its
/// header and nonce.
#[derive(Clone)]
struct Envelope {
    sealed_len: u64,
    head: Option<Bytes>,
}

impl Envelope {
    fn plain_len(&self) -> u64 {
        match &self.head {
            None => self.sealed_len,
            Some(h) => plain_len(self.sealed_len, h.len() as u64).unwrap_or(0),
        }
    }
}

/// A [`Read`] + [`Seek`] over the two pieces of an age file a ranged read fetched: the
/// header with its nonce at the start, and some whole chunks further on. Reads elsewhere
/// fail, so a bug cannot turn into decrypting the wrong bytes.
struct Pieces {
    head: Bytes,
    body_at: u64,
    body: Bytes,
    len: u64,
    pos: u64,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (src, at) = if self.pos < self.head.len() as u64 {
            (&self.head, 0)
        } else if self.pos >= self.body_at && self.pos < self.body_at + self.body.len() as u64 {
            (&self.body, self.body_at)
        } else if self.pos >= self.len {
            return Ok(0);
        } else {
            return Err(io::Error::other(format!(
                "age: byte {} of the object was not fetched (head {}, body {}..{}, len {})",
                self.pos,
                self.head.len(),
                self.body_at,
                self.body_at + self.body.len() as u64,
                self.len
            )));
        };
        let from = (self.pos - at) as usize;
        let n = buf.len().min(src.len() - from);
        buf[..n].copy_from_slice(&src[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Pieces {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = to.ok_or_else(|| io::Error::other("age: seek before the start"))?;
        Ok(self.pos)
    }
}

/// One object of the replica: an LTX file, or a Litestream 0.3 file.
#[derive(Clone, Copy)]
enum Obj<'a> {
    Ltx(LtxKey),
    V3(&'a V3File),
}

impl Obj<'_> {
    fn path(&self) -> String {
        match self {
            Obj::Ltx(k) => k.to_string(),
            Obj::V3(f) => f.path(),
        }
    }
}

/// A [`ReplicaStore`] whose LTX files are age-encrypted in `inner`; see the module docs.
pub struct AgeStore {
    inner: Arc<dyn ReplicaStore>,
    keys: Arc<AgeKeys>,
    /// By object path (`LtxKey` or `V3File` path).
    envelopes: Mutex<HashMap<String, Envelope>>,
}

impl AgeStore {
    pub fn new(inner: Arc<dyn ReplicaStore>, keys: AgeKeys) -> AgeStore {
        AgeStore {
            inner,
            keys: Arc::new(keys),
            envelopes: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, path: String, env: Envelope) {
        let mut m = self.envelopes.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_REMEMBERED {
            m.clear();
        }
        m.insert(path, env);
    }

    fn remembered(&self, path: &str) -> Option<Envelope> {
        let m = self.envelopes.lock().unwrap_or_else(|e| e.into_inner());
        m.get(path).cloned()
    }

    fn refuse(&self, what: &str, r: Refusal) -> StorageError {
        r.into_error(self.inner.location(), what)
    }

    /// The envelope of the object at `path` of `sealed_len` bytes: remembered, else read
    /// from its first bytes. `None` if it is gone.
    async fn envelope(
        &self,
        path: &str,
        sealed_len: u64,
        obj: Obj<'_>,
    ) -> Result<Option<Envelope>, StorageError> {
        if let Some(e) = self.remembered(path).filter(|e| e.sealed_len == sealed_len) {
            return Ok(Some(e));
        }
        if sealed_len == 0 {
            // Nothing to read; not an age file (and no valid LTX file either).
            return Ok(Some(Envelope {
                sealed_len,
                head: None,
            }));
        }
        let mut want = FIRST_HEAD_READ;
        loop {
            let n = want.min(sealed_len);
            let prefix = match self.fetch(obj, Some(0..n)).await {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let env = match head_len(&prefix) {
                Head::Plain => Envelope {
                    sealed_len,
                    head: None,
                },
                Head::Sealed(h) if plain_len(sealed_len, h).is_some() => Envelope {
                    sealed_len,
                    head: Some(prefix.slice(..h as usize)),
                },
                Head::NeedMore if n < sealed_len && want < MAX_HEAD_BYTES => {
                    want *= 4;
                    continue;
                }
                _ => {
                    return Err(self.refuse(
                        path,
                        Refusal::Tampered("its age header is damaged or the object is truncated"),
                    ))
                }
            };
            self.remember(path.to_string(), env.clone());
            return Ok(Some(env));
        }
    }

    /// The plaintext sizes of `objs` of the stored sizes given, in order; `None` for
    /// objects gone meanwhile.
    async fn plain_sizes(
        &self,
        objs: Vec<(Obj<'_>, u64)>,
    ) -> Result<Vec<Option<u64>>, StorageError> {
        // In batches rather than a buffered stream: a closure over `Obj<'_>` there trips
        // the `Send` check of `async_trait`'s boxed futures (a higher-ranked lifetime).
        let mut out = Vec::with_capacity(objs.len());
        for batch in objs.chunks(HEAD_READS_IN_FLIGHT) {
            let mut futs = Vec::with_capacity(batch.len());
            for &(obj, size) in batch {
                futs.push(self.plain_size(obj, size));
            }
            out.extend(futures::future::try_join_all(futs).await?);
        }
        Ok(out)
    }

    async fn plain_size(&self, obj: Obj<'_>, size: u64) -> Result<Option<u64>, StorageError> {
        let env = self.envelope(&obj.path(), size, obj).await?;
        Ok(env.map(|e| e.plain_len()))
    }

    async fn list_plain(&self, files: Vec<LtxInfo>) -> Result<Vec<LtxInfo>, StorageError> {
        let objs = files
            .iter()
            .map(|f| (Obj::Ltx(f.key), f.size_bytes))
            .collect();
        let sizes = self.plain_sizes(objs).await?;
        Ok(files
            .into_iter()
            .zip(sizes)
            .filter_map(|(mut f, n)| {
                f.size_bytes = n?;
                Some(f)
            })
            .collect())
    }

    /// Bytes of one object as stored (whole with `None`).
    async fn fetch(&self, obj: Obj<'_>, r: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        match (obj, r) {
            (Obj::Ltx(key), r) => self.inner.get(&key, r).await,
            (Obj::V3(f), Some(r)) => self.inner.v3()?.get_v3_range(f, r).await,
            (Obj::V3(f), None) => self.inner.v3()?.get_v3(f).await,
        }
    }

    /// Bytes `range` (or all) of the plaintext of the object at `path`.
    async fn read(
        &self,
        path: &str,
        range: Option<Range<u64>>,
        obj: Obj<'_>,
    ) -> Result<Bytes, StorageError> {
        let env = self.remembered(path);
        match (range, env) {
            (Some(r), Some(Envelope { head: None, .. })) => self.fetch(obj, Some(r)).await,
            (
                Some(r),
                Some(Envelope {
                    head: Some(head),
                    sealed_len,
                }),
            ) => self.read_range(path, r, head, sealed_len, obj).await,
            (range, _) => {
                let sealed = self.fetch(obj, None).await?;
                let plain = self.open_whole(path, sealed).await?;
                match range {
                    None => Ok(plain),
                    Some(r) if r.end <= plain.len() as u64 && r.start <= r.end => {
                        Ok(plain.slice(r.start as usize..r.end as usize))
                    }
                    Some(r) => Err(StorageError::permanent(
                        self.inner.location().to_string(),
                        path.to_string(),
                        format!(
                            "bytes {}..{} asked for, the plaintext has {}",
                            r.start,
                            r.end,
                            plain.len()
                        ),
                    )),
                }
            }
        }
    }

    /// A whole object's plaintext (plaintext objects as they are).
    async fn open_whole(&self, path: &str, sealed: Bytes) -> Result<Bytes, StorageError> {
        if !sealed.starts_with(AGE_MAGIC) {
            return Ok(sealed);
        }
        let keys = self.keys.clone();
        let sealed_is_large = sealed.len() > BLOCKING_BYTES;
        let open = move || keys.open(&sealed).map(Bytes::from);
        let plain = if sealed_is_large {
            tokio::task::spawn_blocking(open).await.map_err(|e| {
                StorageError::permanent(
                    self.inner.location().to_string(),
                    path.to_string(),
                    e.to_string(),
                )
            })?
        } else {
            open()
        };
        plain.map_err(|r| self.refuse(path, r))
    }

    async fn read_range(
        &self,
        path: &str,
        r: Range<u64>,
        head: Bytes,
        sealed_len: u64,
        obj: Obj<'_>,
    ) -> Result<Bytes, StorageError> {
        if r.start >= r.end {
            return Ok(Bytes::new());
        }
        let h = head.len() as u64;
        // age's reader, seeking to a chunk boundary, measures the plaintext by reading
        // the last chunk, which this read did not fetch: start one byte earlier instead,
        // in the chunk before (64 KiB more in the same request).
        let from = if r.start > 0 && r.start.is_multiple_of(CHUNK_BYTES) {
            r.start - 1
        } else {
            r.start
        };
        let first = from / CHUNK_BYTES;
        let last = (r.end - 1) / CHUNK_BYTES;
        let body_at = h + first * SEALED_CHUNK_BYTES;
        let body_end = (h + (last + 1) * SEALED_CHUNK_BYTES).min(sealed_len);
        if body_at >= body_end {
            return Err(StorageError::permanent(
                self.inner.location().to_string(),
                path.to_string(),
                format!(
                    "bytes {}..{} asked for, past the plaintext's end",
                    r.start, r.end
                ),
            ));
        }
        let body = self.fetch(obj, Some(body_at..body_end)).await?;
        let keys = self.keys.clone();
        let pieces = Pieces {
            head,
            body_at,
            body,
            len: sealed_len,
            pos: 0,
        };
        let open = move || -> Result<Bytes, Refusal> {
            let mut rd = keys.decryptor(pieces)?;
            rd.seek(SeekFrom::Start(from)).map_err(Refusal::from_io)?;
            let mut out = vec![0u8; (r.end - from) as usize];
            rd.read_exact(&mut out).map_err(Refusal::from_io)?;
            let out = Bytes::from(out);
            Ok(out.slice((r.start - from) as usize..))
        };
        let out = if body_end - body_at > BLOCKING_BYTES as u64 {
            tokio::task::spawn_blocking(open).await.map_err(|e| {
                StorageError::permanent(
                    self.inner.location().to_string(),
                    path.to_string(),
                    e.to_string(),
                )
            })?
        } else {
            open()
        };
        out.map_err(|e| self.refuse(path, e))
    }

    /// Seals `data` for `key`, remembering its header.
    async fn seal(&self, key: &LtxKey, data: Bytes) -> Result<Bytes, StorageError> {
        let keys = self.keys.clone();
        let large = data.len() > BLOCKING_BYTES;
        let seal = move || keys.seal(&data);
        let sealed = if large {
            tokio::task::spawn_blocking(seal)
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
        } else {
            seal()
        };
        let (sealed, head) = sealed.map_err(|e| {
            StorageError::permanent(
                self.inner.location().to_string(),
                key.to_string(),
                format!("age encryption: {e}"),
            )
        })?;
        let sealed = Bytes::from(sealed);
        self.remember(
            key.to_string(),
            Envelope {
                sealed_len: sealed.len() as u64,
                head: Some(sealed.slice(..head as usize)),
            },
        );
        Ok(sealed)
    }
}

#[async_trait]
impl ReplicaStore for AgeStore {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn set_file_mode(&self, mode: crate::fsutil::FileMode) {
        self.inner.set_file_mode(mode);
    }

    async fn list(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.inner.list(level).await?;
        self.list_plain(files).await
    }

    async fn list_exact_times(&self, level: Level) -> Result<Vec<LtxInfo>, StorageError> {
        let files = self.inner.list_exact_times(level).await?;
        self.list_plain(files).await
    }

    async fn get(&self, key: &LtxKey, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.read(&key.to_string(), range, Obj::Ltx(*key)).await
    }

    fn restore_chunk_bytes(&self) -> u64 {
        // Whole chunks: a read never fetches a chunk twice.
        self.inner
            .restore_chunk_bytes()
            .div_ceil(CHUNK_BYTES)
            .max(1)
            * CHUNK_BYTES
    }

    async fn put(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let sealed = self.seal(key, data).await?;
        self.inner.put(key, sealed, created).await
    }

    /// Small files go the in-memory way of `put`; a large one is sealed into a temp file
    /// ([`AgeKeys::seal_file`], in `TMPDIR`) and handed to the inner store's `put_file`.
    async fn put_file(
        &self,
        key: &LtxKey,
        file: &std::fs::File,
        len_bytes: u64,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        if len_bytes <= BLOCKING_BYTES as u64 {
            let data = super::read_whole(self.location(), key, file, len_bytes).await?;
            return self.put(key, data, created).await;
        }
        let fail = |e: io::Error| {
            StorageError::permanent(
                self.inner.location().to_string(),
                key.to_string(),
                format!("age encryption: {e}"),
            )
        };
        let keys = self.keys.clone();
        let src = file.try_clone().map_err(fail)?;
        let (sealed, sealed_len, head) =
            tokio::task::spawn_blocking(move || keys.seal_file(&src, len_bytes))
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
                .map_err(fail)?;
        self.remember(
            key.to_string(),
            Envelope {
                sealed_len,
                head: Some(head),
            },
        );
        self.inner.put_file(key, &sealed, sealed_len, created).await
    }

    async fn delete(&self, keys: &[LtxKey]) -> Result<(), StorageError> {
        self.inner.delete(keys).await
    }

    fn named(&self) -> Result<&dyn NamedStore, StorageError> {
        self.inner.named()?;
        Ok(self)
    }

    fn v3(&self) -> Result<&dyn V3Store, StorageError> {
        self.inner.v3()?;
        Ok(self)
    }
}

/// Named objects stay plaintext (module docs); only the fenced LTX put is sealed.
#[async_trait]
impl NamedStore for AgeStore {
    async fn put_name(&self, name: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.named()?.put_name(name, data).await
    }

    async fn get_name(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes, StorageError> {
        self.inner.named()?.get_name(name, range).await
    }

    async fn head_name(&self, name: &str) -> Result<NamedObject, StorageError> {
        self.inner.named()?.head_name(name).await
    }

    async fn delete_name(&self, name: &str) -> Result<(), StorageError> {
        self.inner.named()?.delete_name(name).await
    }

    async fn create_name(&self, name: &str, data: Bytes) -> Result<ETag, StorageError> {
        self.inner.named()?.create_name(name, data).await
    }

    async fn get_name_versioned(&self, name: &str) -> Result<(Bytes, ETag), StorageError> {
        self.inner.named()?.get_name_versioned(name).await
    }

    async fn put_name_if_match(
        &self,
        name: &str,
        data: Bytes,
        etag: &ETag,
    ) -> Result<ETag, StorageError> {
        self.inner
            .named()?
            .put_name_if_match(name, data, etag)
            .await
    }

    async fn put_if_absent(
        &self,
        key: &LtxKey,
        data: Bytes,
        created: SystemTime,
    ) -> Result<(), StorageError> {
        let sealed = self.seal(key, data).await?;
        self.inner
            .named()?
            .put_if_absent(key, sealed, created)
            .await
    }
}

/// Litestream 0.3 generations: 0.3 wrote age(lz4(data)), so what is returned here is the
/// LZ4 frame `V3Store` callers expect.
#[async_trait]
impl V3Store for AgeStore {
    async fn list_v3(&self) -> Result<Vec<V3File>, StorageError> {
        let files = self.inner.v3()?.list_v3().await?;
        let objs = files.iter().map(|f| (Obj::V3(f), f.size_bytes)).collect();
        let sizes = self.plain_sizes(objs).await?;
        Ok(files
            .iter()
            .zip(sizes)
            .filter_map(|(f, n)| {
                let mut f = f.clone();
                f.size_bytes = n?;
                Some(f)
            })
            .collect())
    }

    async fn get_v3(&self, file: &V3File) -> Result<Bytes, StorageError> {
        self.read(&file.path(), None, Obj::V3(file)).await
    }

    async fn get_v3_range(&self, file: &V3File, range: Range<u64>) -> Result<Bytes, StorageError> {
        self.read(&file.path(), Some(range), Obj::V3(file)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::FileStore;
    use ltx::TxId;

    fn keys() -> (AgeKeys, String) {
        use age::secrecy::ExposeSecret;
        let text = age::x25519::Identity::generate()
            .to_string()
            .expose_secret()
            .to_string();
        (AgeKeys::parse(&[&text], &[]).unwrap(), text)
    }

    #[test]
    fn plain_len_inverts_sealing() {
        let (k, _) = keys();
        for n in [0usize, 1, 100, 65535, 65536, 65537, 3 * 65536, 200_000] {
            let plain = vec![7u8; n];
            let (sealed, head) = k.seal(&plain).unwrap();
            assert_eq!(head_len(&sealed), Head::Sealed(head), "{n}");
            assert_eq!(plain_len(sealed.len() as u64, head), Some(n as u64), "{n}");
            assert_eq!(k.open(&sealed).unwrap(), plain);
        }
    }

    #[test]
    fn keys_errors_name_the_position_never_the_key() {
        let (_, good) = keys();
        let bad = "AGE-SECRET-KEY-1NOTAKEY";
        let e = AgeKeys::parse(&[&good, bad], &[]).unwrap_err().to_string();
        assert!(e.starts_with("identities[1]: "), "{e}");
        assert!(!e.contains("NOTAKEY"), "{e}");
        let e = AgeKeys::parse(&[], &["# only a comment\n"])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "recipients[0]: holds no recipient");
        let e = AgeKeys::parse(&[], &["age1xyz"]).unwrap_err().to_string();
        assert!(e.starts_with("recipients[0]: not an age"), "{e}");
        let multi = format!("# created: now\n{good}\n\n{good}\n");
        assert_eq!(AgeKeys::parse(&[&multi], &[]).unwrap().identities.len(), 2);
    }

    #[tokio::test]
    async fn ranged_reads_match_the_plaintext_and_tampering_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn ReplicaStore> = Arc::new(FileStore::new(dir.path().to_path_buf()));
        let (k, text) = keys();
        let store = AgeStore::new(inner.clone(), k);
        let key = LtxKey::new(Level::L0, TxId::new(1).unwrap(), TxId::new(1).unwrap());
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put(&key, Bytes::from(plain.clone()), SystemTime::now())
            .await
            .unwrap();
        let raw = inner.get(&key, None).await.unwrap();
        assert!(raw.starts_with(AGE_MAGIC));
        // A fresh store (nothing remembered) lists plaintext sizes and reads ranges.
        let fresh = AgeStore::new(inner.clone(), AgeKeys::parse(&[&text], &[]).unwrap());
        let listed = fresh.list(Level::L0).await.unwrap();
        assert_eq!(listed[0].size_bytes, plain.len() as u64);
        let ranges = [
            0..1,
            0..65536,
            65535..65537,
            100_000..300_000,
            299_999..300_000,
            131072..196608,
            65536..300_000,
            262144..300_000,
        ];
        for r in ranges {
            let got = fresh
                .get(&key, Some(r.clone()))
                .await
                .unwrap_or_else(|_| panic!("{r:?}"));
            assert_eq!(&got[..], &plain[r.start as usize..r.end as usize], "{r:?}");
        }
        assert_eq!(&fresh.get(&key, None).await.unwrap()[..], &plain[..]);
        // Wrong identity, no identity, a flipped byte.
        let other = AgeStore::new(inner.clone(), keys().0);
        let e = other.get(&key, None).await.unwrap_err().to_string();
        assert!(e.contains("none of the configured age identities"), "{e}");
        let mut bad = raw.to_vec();
        let at = bad.len() - 100;
        bad[at] ^= 1;
        inner
            .put(&key, Bytes::from(bad), SystemTime::now())
            .await
            .unwrap();
        let e = fresh
            .get(&key, Some(299_000..300_000))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("fails authentication"), "{e}");
        let e = fresh.get(&key, None).await.unwrap_err().to_string();
        assert!(e.contains("fails authentication"), "{e}");
        assert!(!e.contains("AGE-SECRET"), "{e}");
    }
}
