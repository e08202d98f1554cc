//! A real OpenSSH server (Debian's `/usr/sbin/sshd`) on loopback, one per test, killed on
//! drop, with its SFTP subsystem (`internal-sftp`).
//!
//! Everything it uses is generated in a temp dir: an ed25519 host key, an ed25519 client
//! key whose public half is the only authorized key, and its own `sshd_config` (no PAM,
//! `StrictModes no`, password logins enabled so wrong passwords can be tried). It runs as
//! the current user and logs in as that user. `sshd` comes from `$SSHD_BIN` or
//! `/usr/sbin/sshd` (scripts/test.sh installs it: `apt-get install -y openssh-server`);
//! tests fail, never skip, without it. As root, sshd needs its privilege-separation
//! directory `/run/sshd`, which the harness creates if missing.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engine::storage::sftp::SftpOptions;

use crate::harness::Proc;

pub struct Sshd {
    proc: Proc,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The login name (the current user).
    pub user: String,
    /// The client's private key (OpenSSH format, no passphrase).
    pub client_key: PathBuf,
    /// The server's public host key line, `ssh-ed25519 AAAA... comment`.
    pub host_key: String,
}

impl Sshd {
    pub fn start() -> Sshd {
        let bin = sshd_bin();
        let dir = tempfile::Builder::new()
            .prefix("sr-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        keygen(&d.join("host_ed25519"));
        keygen(&d.join("client_ed25519"));
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let host_key = std::fs::read_to_string(d.join("host_ed25519.pub"))
            .unwrap()
            .trim()
            .to_string();
        let user = current_user();
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } == 0 && !Path::new("/run/sshd").is_dir() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\nPermitRootLogin yes\n\
                 PubkeyAuthentication yes\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n\
                 LogLevel VERBOSE\nMaxStartups 100\n",
                hk = d.join("host_ed25519").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        let proc = spawn(&bin, d);
        let client_key = d.join("client_ed25519");
        let s = Sshd {
            proc,
            dir,
            port,
            user,
            client_key,
            host_key,
        };
        s.wait_port();
        s
    }

    /// Stops the server and every session it has open, then starts it again on the same
    /// port with the same keys: connections made before are broken.
    pub fn restart(&mut self) {
        self.kill();
        // The port is free once the listener is gone.
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(t.elapsed() < Duration::from_secs(30), "sshd did not stop");
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = spawn(&sshd_bin(), self.dir.path());
        self.wait_port();
    }

    /// Stops the server and its sessions; the keys and data stay until drop.
    pub fn kill(&mut self) {
        // sshd runs in its own process group with its per-connection children.
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the group is
        // our own unreaped child's (process_group(0)), so its id cannot have been reused.
        unsafe { libc::kill(-(self.proc.id() as i32), libc::SIGKILL) };
        let _ = self.proc.child.wait();
    }

    fn wait_port(&self) {
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "sshd did not listen:\n{}",
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A directory on the server (the same machine) for replicas.
    pub fn data(&self, rel: &str) -> PathBuf {
        self.dir.path().join("data").join(rel)
    }

    /// Library options for the replica at `data(rel)`, logging in with the client key and
    /// trusting exactly the server's host key.
    pub fn options(&self, rel: &str) -> SftpOptions {
        let mut o = SftpOptions::new(
            "127.0.0.1",
            self.port,
            &self.user,
            self.data(rel).to_str().unwrap(),
        );
        o.key_path = Some(self.client_key.clone());
        o.host_key = Some(self.host_key.clone());
        o
    }

    /// `sftp://user@127.0.0.1:port/<abs path of data(rel)>`.
    pub fn url(&self, rel: &str) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            self.data(rel).display()
        )
    }

    /// The replica lines of a config (`replica:` body at 6 spaces), for `data(rel)`; the
    /// keys are Litestream's, so the same YAML serves both programs.
    pub fn replica_yaml(&self, rel: &str) -> String {
        format!(
            "      type: sftp\n      host: 127.0.0.1:{}\n      user: {}\n      key-path: {}\n      host-key: {}\n      path: {}\n",
            self.port,
            self.user,
            self.client_key.display(),
            self.host_key,
            self.data(rel).display()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(bin: &Path, d: &Path) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .process_group(0);
    Proc::spawn_appending("sshd", cmd, d.join("sshd.log"))
}

/// Generates an ed25519 key pair at `path` and `path.pub`, without passphrase.
pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sr-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen is required for the SFTP tests (apt-get install -y openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `$SSHD_BIN`, else `/usr/sbin/sshd`.
pub fn sshd_bin() -> PathBuf {
    let p = std::env::var_os("SSHD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"));
    assert!(
        p.is_file(),
        "{} is required for the SFTP tests (scripts/test.sh installs it: apt-get install -y openssh-server)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
