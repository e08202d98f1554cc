//! The SFTP backend's configuration: [`SftpOptions`], checked without I/O.
//!
//! Owns: splitting `host[:port]`, the replica's display location
//! (`sftp://user@host:port/path`, never the password), and reading the `host-key` value
//! (a public key line as `ssh-keyscan` or `authorized_keys` print it, or a `SHA256:`
//! fingerprint). Reads no file: the key file and known_hosts are read when connecting.

use std::fmt;
use std::path::PathBuf;

use russh::keys::{HashAlg, PublicKey};

use crate::storage::StorageError;

/// SSH's port when none is given.
pub const DEFAULT_PORT: u16 = 22;

/// Where and how to reach an SFTP server. Secrets never print (`Debug` shows `***`).
#[derive(Clone, Default)]
pub struct SftpOptions {
    /// Host name or address, without port or brackets.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The login password: tried after the key (or alone when there is no key). Never
    /// used to open the key, so it never reaches a server that refused the key.
    pub password: Option<String>,
    /// An OpenSSH private key (unencrypted, or encrypted with `key_passphrase`).
    pub key_path: Option<PathBuf>,
    /// Opens an encrypted `key_path`; used for nothing else, never sent to the server.
    pub key_passphrase: Option<String>,
    /// The server's expected public key or fingerprint; `None` means the known_hosts files.
    pub host_key: Option<String>,
    /// The replica root on the server: absolute, or relative to the login directory.
    pub path: String,
    /// Write requests of one file in flight at once; 1 sends them one after another.
    pub write_concurrency: usize,
    /// known_hosts files consulted when no `host_key` is given, in order.
    pub known_hosts: Vec<PathBuf>,
}

impl fmt::Debug for SftpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("key_path", &self.key_path)
            .field(
                "key_passphrase",
                &self.key_passphrase.as_ref().map(|_| "***"),
            )
            .field("host_key", &self.host_key)
            .field("path", &self.path)
            .field("write_concurrency", &self.write_concurrency)
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

impl SftpOptions {
    /// Options with the defaults: port 22, 16 writes in flight, and the user's and the
    /// system's known_hosts files (`~/.ssh/known_hosts`, `/etc/ssh/ssh_known_hosts`).
    pub fn new(host: &str, port: u16, user: &str, path: &str) -> SftpOptions {
        let mut known_hosts = Vec::new();
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            known_hosts.push(PathBuf::from(home).join(".ssh/known_hosts"));
        }
        known_hosts.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
        SftpOptions {
            host: host.to_string(),
            port,
            user: user.to_string(),
            path: path.to_string(),
            write_concurrency: 16,
            known_hosts,
            ..Default::default()
        }
    }

    /// `sftp://user@host:port/path`, for logs and errors (a relative path shows as `/~/path`).
    pub fn location(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else if self.path.is_empty() {
            "/~".to_string()
        } else {
            format!("/~/{}", self.path)
        };
        format!("sftp://{}@{host}:{}{path}", self.user, self.port)
    }

    /// `host:port` as people write it (`[::1]:22` for IPv6).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Checks what can be checked without I/O. Errors are `Permanent` and name the replica.
    pub(super) fn check(&self) -> Result<Option<ExpectedHostKey>, StorageError> {
        let bad = |detail: String| {
            StorageError::permanent(self.location(), "replica configuration", detail)
        };
        if self.host.is_empty() {
            return Err(bad("no host given".into()));
        }
        if self.user.is_empty() {
            return Err(bad("no user given".into()));
        }
        if self.key_path.is_none() && self.password.as_deref().is_none_or(str::is_empty) {
            return Err(bad(
                "no credentials: set key-path (an OpenSSH private key) or password".into(),
            ));
        }
        self.host_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
            .map(ExpectedHostKey::parse)
            .transpose()
            .map_err(bad)
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port` (the `host` key and URL authority).
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {p:?} in {s:?} is not a port number"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has `[` without `]`"))?;
        return match after {
            "" => Ok((host.to_string(), DEFAULT_PORT)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), port(p)?)),
                None => Err(format!("unexpected {after:?} after `]` in {s:?}")),
            },
        };
    }
    match s.rsplit_once(':') {
        // More than one colon: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Ok((s.to_string(), DEFAULT_PORT)),
        Some((h, p)) => Ok((h.to_string(), port(p)?)),
        None => Ok((s.to_string(), DEFAULT_PORT)),
    }
    .and_then(|(h, p)| {
        if h.is_empty() {
            Err(format!("{s:?} has no host"))
        } else {
            Ok((h, p))
        }
    })
}

/// The `host-key` setting: a key to compare with the server's, or its fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ExpectedHostKey {
    Key(Box<PublicKey>),
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    Fingerprint(String),
}

impl ExpectedHostKey {
    /// Reads `ssh-ed25519 AAAA... [comment]`, a known_hosts or `ssh-keyscan` line
    /// (`host ssh-ed25519 AAAA...`), a bare base64 key, or `SHA256:...`.
    pub(super) fn parse(s: &str) -> Result<ExpectedHostKey, String> {
        let s = s.trim();
        if let Some(fp) = s.strip_prefix("SHA256:") {
            if fp.is_empty() || fp.contains(char::is_whitespace) {
                return Err(format!("host-key {s:?} is not a SHA256 fingerprint"));
            }
            return Ok(ExpectedHostKey::Fingerprint(format!("SHA256:{fp}")));
        }
        s.split_whitespace()
            .find_map(|t| russh::keys::parse_public_key_base64(t).ok())
            .map(|k| ExpectedHostKey::Key(Box::new(k)))
            .ok_or_else(|| {
                "host-key is neither a public key (`ssh-ed25519 AAAA...`, as `ssh-keyscan HOST` prints it) nor a `SHA256:` fingerprint"
                    .to_string()
            })
    }

    pub(super) fn matches(&self, offered: &PublicKey) -> bool {
        match self {
            ExpectedHostKey::Key(k) => k.key_data() == offered.key_data(),
            ExpectedHostKey::Fingerprint(fp) => fingerprint(offered) == *fp,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            ExpectedHostKey::Key(k) => describe_key(k),
            ExpectedHostKey::Fingerprint(fp) => fp.clone(),
        }
    }
}

/// `SHA256:...` of a key, as OpenSSH prints it.
pub(super) fn fingerprint(k: &PublicKey) -> String {
    k.fingerprint(HashAlg::Sha256).to_string()
}

/// `ssh-ed25519 SHA256:...`.
pub(super) fn describe_key(k: &PublicKey) -> String {
    format!("{} {}", k.algorithm(), fingerprint(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn host_and_port() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("h"), ("h".into(), 22));
        assert_eq!(ok("h:2222"), ("h".into(), 2222));
        assert_eq!(ok("[::1]:2200"), ("::1".into(), 2200));
        assert_eq!(ok("[::1]"), ("::1".into(), 22));
        assert_eq!(ok("fe80::1"), ("fe80::1".into(), 22));
        for bad in ["h:x", "h:0", ":22", "[::1", "[::1]x", "h:70000"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn location_never_shows_the_password() {
        let mut o = SftpOptions::new("h", 2222, "bob", "/srv/db");
        o.password = Some("hunter2".into());
        o.key_passphrase = Some("open-sesame".into());
        assert_eq!(o.location(), "sftp://bob@h:2222/srv/db");
        let debug = format!("{o:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("open-sesame"),
            "{debug}"
        );
        o.path = "backups".into();
        assert_eq!(o.location(), "sftp://bob@h:2222/~/backups");
        o.host = "::1".into();
        assert_eq!(o.host_port(), "[::1]:2222");
    }

    #[test]
    fn options_are_checked_without_io() {
        let mut o = SftpOptions::new("h", 22, "bob", "/p");
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains("no credentials"), "{e}");
        o.password = Some("pw".into());
        assert_eq!(o.check().unwrap(), None);
        o.host_key = Some("not a key".into());
        assert!(o.check().unwrap_err().to_string().contains("host-key"));
    }

    #[test]
    fn host_key_forms() {
        let k = russh::keys::parse_public_key_base64(KEY.split(' ').nth(1).unwrap()).unwrap();
        for form in [
            KEY.to_string(),
            format!("{KEY} root@box"),
            format!("[127.0.0.1]:2222 {KEY}"),
            KEY.split(' ').nth(1).unwrap().to_string(),
            fingerprint(&k),
        ] {
            let e = ExpectedHostKey::parse(&form).unwrap();
            assert!(e.matches(&k), "{form}");
        }
        assert!(ExpectedHostKey::parse("SHA256:").is_err());
        assert!(!ExpectedHostKey::parse("SHA256:abc").unwrap().matches(&k));
        assert!(describe_key(&k).starts_with("ssh-ed25519 SHA256:"));
    }
}
