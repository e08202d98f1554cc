//! One SSH connection with its SFTP session, made and checked.
//!
//! Owns: the TCP connect, the host-key decision (the configured `host-key`, else the
//! known_hosts files; an unknown or different key is refused, never learnt), public-key
//! then password authentication, the `sftp` subsystem, and what the server supports
//! (OpenSSH's `posix-rename`, `hardlink`, `fsync`, `statvfs` and `limits` extensions).
//! Every failure here is a classified [`StorageError`] naming the replica.
//!
//! Does not: retry or reconnect (the store drops a broken [`Conn`] and asks for a new
//! one), or touch files beyond the session's `init`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;

use super::config::{describe_key, ExpectedHostKey, SftpOptions};
use super::error::ssh_is_transient;
use crate::storage::StorageError;

/// Connect, key exchange, login and the SFTP handshake together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// One SFTP request's reply (a whole read or write chunk).
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// Largest read or write request: under OpenSSH's 256 KiB packet limit with room for the
/// header, and a size every server we know accepts when it announces no limits.
const MAX_CHUNK_BYTES: u64 = 128 * 1024;
/// When the server announces no limits (SFTP v3's conservative default).
const DEFAULT_CHUNK_BYTES: u64 = 32 * 1024;

const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// What the server offers beyond SFTP v3.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Extensions {
    /// Rename that replaces the target atomically (`rename(2)`); plain SFTP v3 rename
    /// refuses an existing target.
    pub posix_rename: bool,
    /// `link(2)`: fails if the target exists, never replaces it.
    pub hardlink: bool,
    pub fsync: bool,
    pub statvfs: bool,
}

/// A logged-in SSH connection with its SFTP session.
pub(super) struct Conn {
    handle: Handle<Client>,
    pub sftp: RawSftpSession,
    pub ext: Extensions,
    pub read_chunk_bytes: u32,
    pub write_chunk_bytes: usize,
}

impl Conn {
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Renames `from` to `to`, replacing `to` atomically where the server can
    /// (`posix-rename@openssh.com`).
    pub async fn rename_over(&self, from: &str, to: &str) -> Result<(), super::error::Failure> {
        use russh_sftp::client::error::Error as E;
        use russh_sftp::extensions::HardlinkExtension;
        use russh_sftp::protocol::{Packet, StatusCode};
        if self.ext.posix_rename {
            // Same wire form as hardlink's request: two strings, old then new.
            let request = HardlinkExtension {
                oldpath: from.to_string(),
                newpath: to.to_string(),
            };
            let data: Vec<u8> = TryInto::<Vec<u8>>::try_into(request)
                .map_err(|e| super::error::Failure::Permanent(e.to_string()))?;
            return match self.sftp.extended(POSIX_RENAME, data).await? {
                Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
                Packet::Status(s) => Err(E::Status(s).into()),
                _ => Err(E::UnexpectedPacket.into()),
            };
        }
        // SFTP v3 rename fails when the target exists: remove it first. Not atomic (a
        // reader may find no file for a moment); only servers without posix-rename get here.
        match self.sftp.rename(from, to).await {
            Ok(_) => Ok(()),
            Err(E::Status(s)) if s.status_code == StatusCode::Failure => {
                match self.sftp.remove(to).await {
                    Ok(_) => {}
                    Err(E::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
                    Err(e) => return Err(e.into()),
                }
                self.sftp.rename(from, to).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn close(&self) {
        let _ = self.sftp.close_session();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// How the server's key is judged.
enum HostKeyPolicy {
    Expected(ExpectedHostKey),
    KnownHosts(Vec<std::path::PathBuf>),
}

/// The outcome of the host-key check, kept for the error message.
enum Verdict {
    Trusted,
    Unknown(PublicKey),
    Mismatch {
        offered: PublicKey,
        expected: String,
    },
    Certificate,
}

/// russh's callbacks: only the host-key check.
struct Client {
    host: String,
    port: u16,
    policy: Arc<HostKeyPolicy>,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                judge(&self.policy, &self.host, self.port, key)
            }
            PublicKeyOrCertificate::Certificate(_) => Verdict::Certificate,
        };
        let trusted = matches!(verdict, Verdict::Trusted);
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        Ok(trusted)
    }
}

fn judge(policy: &HostKeyPolicy, host: &str, port: u16, offered: &PublicKey) -> Verdict {
    match policy {
        HostKeyPolicy::Expected(e) if e.matches(offered) => Verdict::Trusted,
        HostKeyPolicy::Expected(e) => Verdict::Mismatch {
            offered: offered.clone(),
            expected: format!("{} (the replica's host-key)", e.describe()),
        },
        HostKeyPolicy::KnownHosts(files) => {
            let mut conflict = None;
            for file in files {
                // A file that is missing or has a line we cannot read vouches for nothing.
                let Ok(recorded) = russh::keys::known_hosts::known_host_keys_path(host, port, file)
                else {
                    continue;
                };
                for (line, k) in recorded {
                    if k.key_data() == offered.key_data() {
                        return Verdict::Trusted;
                    }
                    if k.algorithm() == offered.algorithm() && conflict.is_none() {
                        conflict = Some(format!(
                            "{} (recorded in {} line {line})",
                            describe_key(&k),
                            file.display()
                        ));
                    }
                }
            }
            match conflict {
                Some(expected) => Verdict::Mismatch {
                    offered: offered.clone(),
                    expected,
                },
                None => Verdict::Unknown(offered.clone()),
            }
        }
    }
}

/// Connects, checks the host key, logs in and starts SFTP, within [`CONNECT_TIMEOUT`].
pub(super) async fn connect(
    opts: &SftpOptions,
    expected: Option<&ExpectedHostKey>,
) -> Result<Conn, StorageError> {
    let location = opts.location();
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(opts, expected, &location)).await {
        Ok(r) => r,
        Err(_) => Err(StorageError::transient(
            location,
            format!("connecting to {}", opts.host_port()),
            format!(
                "no SSH login within {} s (is it an SSH server, and reachable?)",
                CONNECT_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn connect_inner(
    opts: &SftpOptions,
    expected: Option<&ExpectedHostKey>,
    location: &str,
) -> Result<Conn, StorageError> {
    let host_port = opts.host_port();
    let what = format!("connecting to {host_port}");
    let transient =
        |detail: String| StorageError::transient(location.to_string(), what.clone(), detail);
    let permanent = |what: &str, detail: String| {
        StorageError::permanent(location.to_string(), what.to_string(), detail)
    };
    let ssh_err = |e: russh::Error| {
        if ssh_is_transient(&e) {
            transient(e.to_string()).with_source(e)
        } else {
            permanent(&what, format!("SSH: {e}")).with_source(e)
        }
    };

    // Read the key first: a bad key-path is a configuration error, whatever the network.
    let key = configured_key(opts).map_err(|d| permanent("key-path", d))?;

    let tcp = tokio::net::TcpStream::connect((opts.host.as_str(), opts.port))
        .await
        .map_err(|e| transient(format!("cannot connect: {e}")).with_source(e))?;
    let _ = tcp.set_nodelay(true);

    let policy = Arc::new(match expected {
        Some(e) => HostKeyPolicy::Expected(e.clone()),
        None => HostKeyPolicy::KnownHosts(opts.known_hosts.clone()),
    });
    let verdict = Arc::new(Mutex::new(None));
    let handler = Client {
        host: opts.host.clone(),
        port: opts.port,
        policy,
        verdict: verdict.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    });
    let connected = client::connect_stream(config, tcp, handler).await;
    let verdict = verdict.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut handle = match (connected, verdict) {
        (Ok(h), _) => h,
        (Err(_), Some(v)) if !matches!(v, Verdict::Trusted) => {
            return Err(host_key_error(opts, location, v));
        }
        (Err(e), _) => return Err(ssh_err(e)),
    };

    log_in(&mut handle, opts, key, location, &ssh_err).await?;

    let channel = handle.channel_open_session().await.map_err(ssh_err)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(ssh_err)?;
    let cfg = russh_sftp::client::Config {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Default::default()
    };
    let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), cfg);
    let version = sftp.init().await.map_err(|e| {
        permanent(
            "starting SFTP",
            format!("the server did not start its sftp subsystem: {e}"),
        )
    })?;
    let has = |name: &str, ver: &str| version.extensions.get(name).is_some_and(|v| v == ver);
    let ext = Extensions {
        posix_rename: has(POSIX_RENAME, "1"),
        hardlink: has(russh_sftp::extensions::HARDLINK, "1"),
        fsync: has(russh_sftp::extensions::FSYNC, "1"),
        statvfs: has(russh_sftp::extensions::STATVFS, "2"),
    };
    let (mut read_chunk, mut write_chunk) = (DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_BYTES);
    if has(russh_sftp::extensions::LIMITS, "1") {
        let limits = Limits::from(sftp.limits().await.map_err(|e| {
            permanent("starting SFTP", format!("reading the server's limits: {e}"))
        })?);
        read_chunk = limits
            .read_len
            .unwrap_or(MAX_CHUNK_BYTES)
            .min(MAX_CHUNK_BYTES);
        write_chunk = limits
            .write_len
            .unwrap_or(MAX_CHUNK_BYTES)
            .min(MAX_CHUNK_BYTES);
        sftp.set_limits(limits);
    }
    tracing::debug!(replica = %location, ?ext, read_chunk, write_chunk, "SFTP session started");
    Ok(Conn {
        handle,
        sftp,
        ext,
        read_chunk_bytes: read_chunk.max(1) as u32,
        write_chunk_bytes: write_chunk.max(1) as usize,
    })
}
/// Logs in as `opts.user`: with the key, then the password; `PermissionDenied` naming
/// what the server refused and what it accepts.
async fn log_in(
    handle: &mut Handle<Client>,
    opts: &SftpOptions,
    key: Option<russh::keys::PrivateKey>,
    location: &str,
    ssh_err: &(dyn Fn(russh::Error) -> StorageError + Sync),
) -> Result<(), StorageError> {
    let mut tried = Vec::new();
    let mut accepted = String::new();
    let mut ok = false;
    if let Some(key) = key {
        tried.push("publickey");
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(ssh_err)?
                .flatten()
        } else {
            None
        };
        let r = handle
            .authenticate_publickey(&opts.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(ssh_err)?;
        (ok, accepted) = auth_outcome(r);
    }
    if let (false, Some(pw)) = (ok, opts.password.as_deref().filter(|p| !p.is_empty())) {
        tried.push("password");
        let r = handle
            .authenticate_password(&opts.user, pw)
            .await
            .map_err(ssh_err)?;
        (ok, accepted) = auth_outcome(r);
    }
    if !ok {
        return Err(StorageError::permission_denied(location.to_string(), format!("SSH login as {:?}", opts.user), format!(
                "the server refused {} (it accepts: {}); check user, and key-path (its public key must be in the user's authorized_keys on the server) or password",
                tried.join(" and "),
                if accepted.is_empty() { "nothing more" } else { &accepted }
            )));
    }

    Ok(())
}

fn auth_outcome(r: AuthResult) -> (bool, String) {
    match r {
        AuthResult::Success => (true, String::new()),
        AuthResult::Failure {
            remaining_methods, ..
        } => (
            false,
            remaining_methods
                .iter()
                .map(<&str>::from)
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// The replica's `key-path` key, if any, opened with `key-passphrase` only: the login
/// password must not open it, or one secret would serve two uses and a server that refused
/// the key would be sent the key's passphrase as a password (security issue 17).
fn configured_key(opts: &SftpOptions) -> Result<Option<russh::keys::PrivateKey>, String> {
    opts.key_path
        .as_deref()
        .map(|p| load_key(p, opts.key_passphrase.as_deref()))
        .transpose()
}

/// Reads an OpenSSH private key; an encrypted one is opened with `passphrase` (the
/// `key-passphrase` setting). The error never contains the passphrase.
fn load_key(path: &Path, passphrase: Option<&str>) -> Result<russh::keys::PrivateKey, String> {
    let passphrase = passphrase.filter(|p| !p.is_empty());
    russh::keys::load_secret_key(path, passphrase).map_err(|e| {
        let hint = match (&e, passphrase) {
            (russh::keys::Error::KeyIsEncrypted, None) => {
                " (the key is encrypted: set key-passphrase; the login password does not open it)"
            }
            _ => "",
        };
        format!("cannot use private key {}: {e}{hint}", path.display())
    })
}

fn host_key_error(opts: &SftpOptions, location: &str, v: Verdict) -> StorageError {
    let hp = opts.host_port();
    let scan = if opts.port == 22 {
        format!("ssh-keyscan {}", opts.host)
    } else {
        format!("ssh-keyscan -p {} {}", opts.port, opts.host)
    };
    let detail = match v {
        Verdict::Trusted => unreachable!("trusted keys connect"),
        Verdict::Unknown(k) => format!(
            "the server's host key ({}) is not known, so the connection was refused: set `host-key:` on this replica to the server's public key (`{scan}` prints it; check its fingerprint with `ssh-keygen -lf` on the server), or add it to ~/.ssh/known_hosts",
            describe_key(&k)
        ),
        Verdict::Mismatch { offered, expected } => format!(
            "the server's host key is {}, not the expected {expected}: someone may be intercepting the connection, or the server's key was replaced; if it was replaced on purpose, update `host-key:` (or known_hosts)",
            describe_key(&offered)
        ),
        Verdict::Certificate => "the server offered a host certificate, which is not supported: set `host-key:` to the server's plain public key".to_string(),
    };
    StorageError::permanent(
        location.to_string(),
        format!("SSH host key of {hp}"),
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 key made for this test by `ssh-keygen -N key-pw`.
    const ENCRYPTED_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABDycKDhaD
poSvrXUgyMCIohAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAICY7SG6qMANec1eI
DzQosI3HyBByMxivhkB+kv2JCfuBAAAAkPA9YhWD9NEySAvNXKPRzoSRekFmn7HY373IR9
3zUxuDEFgnv3ASb6pNwmDR0ieeSUYxqHFPRKsWBODVUugb9iJ+EvhV72P9881OAhbEsJwL
rga9jN01DF/Fzru2yAfqoTiM8rCV0Rm6T1MFDKqpvLdQArGqmH0urcw/X26eKMEnx0yx4I
cYLRoUBA/SWUUQgA==
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn only_key_passphrase_opens_the_key_never_the_password() {
        let path = std::env::temp_dir().join(format!("sr-enc-key-{}", std::process::id()));
        std::fs::write(&path, ENCRYPTED_KEY).unwrap();
        let mut o = SftpOptions::new("h", 22, "bob", "/p");
        o.key_path = Some(path.clone());

        // The login password equals the passphrase: it still must not open the key.
        o.password = Some("key-pw".into());
        let e = configured_key(&o).unwrap_err();
        assert!(
            e.contains("encrypted") && e.contains("set key-passphrase"),
            "{e}"
        );
        assert!(!e.contains("key-pw"), "{e}");

        o.password = None;
        o.key_passphrase = Some("wrong".into());
        let e = configured_key(&o).unwrap_err();
        assert!(
            !e.contains("wrong") && !e.contains("set key-passphrase"),
            "{e}"
        );

        o.key_passphrase = Some("key-pw".into());
        let key = configured_key(&o).unwrap().expect("a key");
        assert!(key.algorithm().as_str().contains("ed25519"));
        std::fs::remove_file(&path).unwrap();
    }
}
