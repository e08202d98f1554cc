//! A real single-node Garage S3 server on loopback, one per test, killed on drop.
//!
//! The `garage` binary comes from `$GARAGE_BIN`, `PATH` or `~/.cargo/bin` (scripts/test.sh
//! installs it with `cargo install garage --locked`). Tests fail, never skip, without it.
//!
//! Setup is the operator's: write a config, `garage server`, then with the CLI assign and
//! apply a one-node layout, create a key, create a bucket and allow the key on it.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::Proc;

/// The S3 region Garage is configured with; requests signed for another are refused.
pub const REGION: &str = "garage";

pub struct Garage {
    proc: Proc,
    dir: tempfile::TempDir,
    config: PathBuf,
    bin: PathBuf,
    pub s3_port: u16,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    /// Starts a server with one bucket (`bucket`) that key `test-key` may read and write.
    pub fn start() -> Garage {
        Garage::start_with_bucket("sr-test")
    }

    pub fn start_with_bucket(bucket: &str) -> Garage {
        Garage::start_with(bucket, REGION)
    }

    /// A server whose S3 API answers as `region` (MinIO's default is `us-east-1`).
    pub fn start_with(bucket: &str, region: &str) -> Garage {
        let bin = garage_bin();
        let dir = tempfile::Builder::new()
            .prefix("sr-garage-")
            .tempdir()
            .unwrap();
        let [rpc_port, s3_port, admin_port] = free_ports();
        let config = dir.path().join("garage.toml");
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3_port}"
s3_region = "{region}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=info");
        let proc = Proc::spawn("garage", cmd, dir.path().join("garage.log"));
        let mut g = Garage {
            proc,
            dir,
            config,
            bin,
            s3_port,
            bucket: bucket.to_string(),
            key_id: String::new(),
            secret: String::new(),
        };
        g.setup();
        g
    }

    fn setup(&mut self) {
        // `status` answers once the RPC server is up.
        let t = Instant::now();
        loop {
            let out = self.cli_output(&["status"]);
            if out.status.success() {
                break;
            }
            if let Some(st) = self.proc.exited() {
                panic!("garage server exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "garage did not start: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(100));
        }
        let id = self.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_string();
        self.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        self.cli(&["layout", "apply", "--version", "1"]);
        let key = self.cli(&["key", "create", "test-key"]);
        self.key_id = field(&key, "Key ID");
        self.secret = field(&key, "Secret key");
        let bucket = self.bucket.clone();
        self.cli(&["bucket", "create", &bucket]);
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", "test-key",
        ]);
        self.wait_s3();
    }

    /// Waits until the S3 API answers HTTP (any status: unsigned requests get 403).
    fn wait_s3(&self) {
        use std::io::{Read, Write};
        let t = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.s3_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!(
                    "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    self.bucket
                );
                let mut resp = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut resp).is_ok()
                    && resp.starts_with("HTTP/1.1 ")
                {
                    return;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "garage S3 API not answering:\n{}",
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (an object-store outage); its data and ports stay for
    /// [`Garage::restart`].
    pub fn stop(&mut self) {
        self.proc.kill9();
    }

    /// Starts the server again on the same config, data and ports after [`Garage::stop`],
    /// and waits until S3 answers. Layout, key and buckets are kept in its data.
    pub fn restart(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=info");
        self.proc = Proc::spawn_appending("garage", cmd, self.dir.path().join("garage.log"));
        self.wait_s3();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Creates another bucket that `test-key` may read and write.
    pub fn create_bucket(&self, name: &str) {
        self.cli(&["bucket", "create", name]);
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", "test-key",
        ]);
    }

    /// The replica lines of a config (`replica:` body at 6 spaces), for `path` in the bucket.
    pub fn replica_yaml(&self, path: &str) -> String {
        format!(
            "      type: s3\n      bucket: {}\n      path: {path}\n      endpoint: {}\n      region: {REGION}\n      force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n",
            self.bucket,
            self.endpoint(),
            self.key_id,
            self.secret
        )
    }

    /// Runs `garage -c CONFIG args...` and returns stdout, panicking on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }
}

/// `$GARAGE_BIN`, else `garage` on `PATH`, else `~/.cargo/bin/garage`.
pub fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("garage"))
                .find(|c| c.is_file())
        })
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path.or(home.filter(|p| p.is_file())).expect(
        "the `garage` binary is required for the S3 tests (scripts/test.sh installs it: cargo install garage --locked)",
    )
}

/// `Name: value` from the CLI's text output.
pub(crate) fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(name)?
                .trim_start()
                .strip_prefix(':')
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name:?} in garage output:\n{text}"))
}

/// Three distinct free loopback ports (bound together so they differ, then released).
pub(crate) fn free_ports() -> [u16; 3] {
    let ls: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let p: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    [p[0], p[1], p[2]]
}

pub(crate) fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u8
}
