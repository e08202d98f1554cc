//! A real three-node Garage cluster (replication factor 3) on loopback, and the test that
//! replication loses nothing when one node stops mid-stream.
//!
//! Each node is its own `garage server` process with its own metadata and data
//! directories, sharing one RPC secret; node 0 connects the others, a layout puts one
//! node in each of three zones, and every object is stored on all three. Writes need two
//! of them (Garage's default quorum), so a cluster with one node down keeps accepting them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::garage::{field, free_ports, garage_bin, rand_byte, REGION};
use crate::harness::*;
use crate::s3::s3_config;

struct Node {
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    proc: Option<Proc>,
}

pub struct GarageCluster {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    nodes: Vec<Node>,
    ids: Vec<String>,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl GarageCluster {
    /// Starts `n` nodes, joins them, applies a layout with replication factor `n` and
    /// creates bucket `sr-test` for key `test-key`.
    pub fn start(n: usize) -> GarageCluster {
        let bin = garage_bin();
        let dir = tempfile::Builder::new()
            .prefix("sr-garage-cluster-")
            .tempdir()
            .unwrap();
        let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
        let nodes = (0..n)
            .map(|i| {
                let [rpc, s3, admin] = free_ports();
                let d = dir.path().join(format!("node{i}"));
                std::fs::create_dir_all(&d).unwrap();
                let config = d.join("garage.toml");
                std::fs::write(
                    &config,
                    format!(
                        r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = {n}

rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "{REGION}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                        meta = d.join("meta").display(),
                        data = d.join("data").display(),
                    ),
                )
                .unwrap();
                Node {
                    config,
                    log: d.join("garage.log"),
                    s3_port: s3,
                    proc: None,
                }
            })
            .collect();
        let mut c = GarageCluster {
            _dir: dir,
            bin,
            nodes,
            ids: Vec::new(),
            bucket: "sr-test".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..n {
            c.start_node(i);
        }
        c.setup();
        c
    }

    /// Starts (or restarts, on its existing data) node `i`.
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.proc.is_none(), "node {i} already running");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info");
        let name = format!("garage node {i}");
        node.proc = Some(Proc::spawn_appending(&name, cmd, node.log.clone()));
        self.wait_rpc(i);
    }

    /// Waits until node `i` is connected to every other node again (after a restart its
    /// peers may take a while to notice it), dialling them itself to hurry that along.
    pub fn wait_connected(&self, i: usize) {
        let t = Instant::now();
        loop {
            for (j, id) in self.ids.iter().enumerate() {
                if j != i {
                    let _ = self.cli_output(i, &["node", "connect", id]);
                }
            }
            let st = self.cli(i, &["status"]);
            if !st.contains("FAILED") && !st.to_lowercase().contains("failed nodes") {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "node {i} did not reconnect:\n{st}"
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills node `i` (SIGKILL: no goodbye to its peers).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill9();
        }
    }

    fn wait_rpc(&mut self, i: usize) {
        let t = Instant::now();
        loop {
            if self.cli_output(i, &["status"]).status.success() {
                return;
            }
            if let Some(st) = self.nodes[i].proc.as_mut().and_then(|p| p.exited()) {
                panic!("garage node {i} exited ({st}):\n{}", self.log(i));
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "garage node {i} did not start:\n{}",
                self.log(i)
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn setup(&mut self) {
        let ids: Vec<String> = (0..self.nodes.len())
            .map(|i| self.cli(i, &["node", "id", "-q"]).trim().to_string())
            .collect();
        self.ids = ids.clone();
        for id in &ids[1..] {
            self.cli(0, &["node", "connect", id]);
        }
        for (z, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            let zone = format!("dc{z}");
            self.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", short]);
        }
        self.cli(0, &["layout", "apply", "--version", "1"]);
        // Every node must know the layout before it serves S3 requests for it.
        let t = Instant::now();
        for i in 0..self.nodes.len() {
            while !self
                .cli(i, &["layout", "show"])
                .contains("Current cluster layout version: 1")
            {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "layout did not spread"
                );
                // Spaces the polls of this wait loop.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let key = self.cli(0, &["key", "create", "test-key"]);
        self.key_id = field(&key, "Key ID");
        self.secret = field(&key, "Secret key");
        let b = self.bucket.clone();
        self.cli(0, &["bucket", "create", &b]);
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", &b, "--key", "test-key",
            ],
        );
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The replica lines of a config, through node `i`'s S3 API.
    pub fn replica_yaml(&self, i: usize, path: &str) -> String {
        format!(
            "      type: s3\n      bucket: {}\n      path: {path}\n      endpoint: {}\n      region: {REGION}\n      force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n",
            self.bucket,
            self.endpoint(i),
            self.key_id,
            self.secret
        )
    }

    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = self.cli_output(i, args);
        assert!(
            out.status.success(),
            "garage (node {i}) {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn cli_output(&self, i: usize, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .output()
            .unwrap()
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

/// Replicates through node 0 while a writer runs; node 2 is killed a third of the way in
/// and stays down. The replicator must finish cleanly, and restores through node 0, node 1,
/// and (after it comes back and before any repair) node 2 must each equal the source page
/// for page.
#[test]
fn three_node_garage_loses_nothing_when_a_node_stops_mid_replication() {
    let mut g = GarageCluster::start(3);
    let w = Work::new();
    let db = w.path("app.db");
    let cfg = s3_config(&w, &db, &g.replica_yaml(0, "db/app"));
    let app = app_db(&db);
    insert_rows(&app, 20, 300);
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    for i in 0..45 {
        if i == 15 {
            g.kill_node(2);
        }
        insert_rows(&app, 4, 200 + 40 * (i % 9));
        if i % 10 == 9 {
            app.execute("DELETE FROM t WHERE id % 5 = 0", []).unwrap();
        }
        // Paces the writer: the node dies while uploads are in flight.
        std::thread::sleep(Duration::from_millis(40));
    }
    let want = pages_of_live(&db);
    let log = r.log.clone();
    let code = r.stop();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(code, 0, "replicator exit status; log:\n{log}");

    let yamls: Vec<String> = (0..3).map(|i| g.replica_yaml(i, "db/app")).collect();
    let restore_via = |node: usize, name: &str| {
        let c = w.path(&format!("via{node}.yml"));
        std::fs::write(
            &c,
            format!(
                "dbs:\n  - path: {}\n    replica:\n{}",
                db.display(),
                yamls[node]
            ),
        )
        .unwrap();
        restore_and_compare(&c, &db, &w.path(name), &want, &[]);
    };
    restore_via(0, "via0.db");
    restore_via(1, "via1.db");
    g.start_node(2);
    g.wait_connected(2);
    restore_via(2, "via2.db");
}
