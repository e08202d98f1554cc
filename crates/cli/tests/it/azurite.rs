//! A real Azurite blob server (Microsoft's Azure Storage emulator) on loopback, one per
//! test, killed on drop.
//!
//! `azurite-blob` comes from `$AZURITE_BLOB_BIN` or `PATH` (scripts/test.sh installs it:
//! `npm install -g azurite`). Tests fail, never skip, without it. The container is created
//! with one Shared Key-signed REST call from a small Node script (Node comes with Azurite;
//! `object_store` cannot create containers, and Litestream does not either).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::Proc;

/// Azurite's well-known development account (public, in Microsoft's documentation).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates a container (`PUT /<account>/<container>?restype=container`, Shared Key
/// signed); an existing one is fine. Arguments: port, account, key, container.
const CREATE_CONTAINER_JS: &str = r#"
const [port, account, key, container] = process.argv.slice(1);
const crypto = require("crypto"), http = require("http");
const date = new Date().toUTCString(), version = "2021-08-06";
const path = `/${account}/${container}`;
const toSign = ["PUT", "", "", "", "", "", "", "", "", "", "", "",
  `x-ms-date:${date}\nx-ms-version:${version}\n/${account}${path}\nrestype:container`].join("\n");
const sig = crypto.createHmac("sha256", Buffer.from(key, "base64")).update(toSign, "utf8").digest("base64");
const req = http.request({ host: "127.0.0.1", port, method: "PUT", path: `${path}?restype=container`,
  headers: { "x-ms-date": date, "x-ms-version": version, "Content-Length": 0,
    Authorization: `SharedKey ${account}:${sig}` } }, (res) => {
  let body = ""; res.on("data", (d) => (body += d));
  res.on("end", () => { if (res.statusCode === 201 || res.statusCode === 409) process.exit(0);
    console.error(`HTTP ${res.statusCode}: ${body}`); process.exit(1); });
});
req.on("error", (e) => { console.error(e.message); process.exit(1); });
req.end();
"#;

pub struct Azurite {
    proc: Proc,
    dir: tempfile::TempDir,
    pub port: u16,
    /// A container created at start.
    pub container: String,
}

impl Azurite {
    /// Starts a server with one container, `sr-test`.
    pub fn start() -> Azurite {
        let bin = azurite_bin();
        let dir = tempfile::Builder::new()
            .prefix("sr-azurite-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path().join("data"))
            .args([
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
            ]);
        let proc = Proc::spawn("azurite-blob", cmd, dir.path().join("azurite.log"));
        let mut a = Azurite {
            proc,
            dir,
            port,
            container: "sr-test".into(),
        };
        a.wait_port();
        a.create_container("sr-test");
        a
    }

    fn wait_port(&mut self) {
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.proc.exited() {
                panic!("azurite-blob exited ({st}):\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "azurite-blob did not listen:\n{}",
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a container (3 to 63 lowercase letters, digits and dashes).
    pub fn create_container(&self, name: &str) {
        let out = Command::new("node")
            .arg("-e")
            .arg(CREATE_CONTAINER_JS)
            .args([&self.port.to_string(), ACCOUNT, ACCOUNT_KEY, name])
            .output()
            .expect("node is required to create Azurite containers");
        assert!(
            out.status.success(),
            "creating container {name}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The account's blob service URL, as Litestream's `endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The replica lines of a config (`replica:` body at 6 spaces), for `path` in the
    /// container.
    pub fn replica_yaml(&self, path: &str) -> String {
        format!(
            "      type: abs\n      account-name: {ACCOUNT}\n      account-key: {ACCOUNT_KEY}\n      bucket: {}\n      path: {path}\n      endpoint: {}\n",
            self.container,
            self.endpoint()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("azurite.log")).unwrap_or_default()
    }
}

/// `$AZURITE_BLOB_BIN`, else `azurite-blob` on `PATH`.
pub fn azurite_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("AZURITE_BLOB_BIN") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("azurite-blob"))
                .find(|c| c.is_file())
        })
        .expect(
            "the `azurite-blob` binary is required for the ABS tests (scripts/test.sh installs it: npm install -g azurite)",
        )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
