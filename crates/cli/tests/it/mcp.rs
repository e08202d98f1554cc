//! `mcp-addr` (parity issue 18): `replicate` serves MCP over Streamable HTTP with
//! Litestream's tools. The client here speaks the protocol as an MCP client does (JSON-RPC
//! POSTs to `/mcp`: initialize, notifications/initialized, tools/list, tools/call) with
//! reqwest, and checks each tool's answer against the replicator's state; the restore tool
//! must produce a file equal to the source page for page, and never replace a file.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::metrics::free_port;

/// Litestream 0.5's tool names (cmd/litestream/mcp.go).
const LITESTREAM_TOOLS: [&str; 7] = [
    "litestream_databases",
    "litestream_info",
    "litestream_ltx",
    "litestream_reset",
    "litestream_restore",
    "litestream_status",
    "litestream_version",
];

/// An MCP client over Streamable HTTP at `http://127.0.0.1:port/mcp`.
struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
    next_id: u64,
}

impl Client {
    fn new(port: u16) -> Client {
        Client::with_timeout(port, Duration::from_secs(120))
    }

    fn with_timeout(port: u16, timeout: Duration) -> Client {
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder().timeout(timeout).build().unwrap(),
            url: format!("http://127.0.0.1:{port}/mcp"),
            next_id: 1,
        }
    }

    /// POSTs one JSON-RPC message: (HTTP status, the JSON-RPC answer if any). An answer
    /// sent as an SSE stream is read from its `data:` lines.
    fn post(&self, msg: &Value, host: Option<&str>) -> Result<(u16, Option<Value>), String> {
        self.rt.block_on(async {
            let mut req = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18")
                .body(msg.to_string());
            if let Some(h) = host {
                req = req.header("host", h);
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let code = resp.status().as_u16();
            let sse = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
            let body = resp.text().await.map_err(|e| e.to_string())?;
            let json = if sse {
                body.lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                    .find(|v| v.get("id").is_some())
            } else {
                serde_json::from_str(&body).ok()
            };
            Ok((code, json))
        })
    }

    /// A request; returns its `result`, panicking on a JSON-RPC error.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let v = self.request_raw(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    fn request_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (code, v) = self.post(&msg, None).unwrap();
        let v = v.unwrap_or_else(|| panic!("{method}: HTTP {code} without an answer"));
        assert_eq!(v["id"], json!(id), "{v}");
        v
    }

    /// `tools/call`: (is_error, the text content).
    fn call(&mut self, tool: &str, args: Value) -> (bool, String) {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let text = r["content"]
            .as_array()
            .unwrap_or_else(|| panic!("{tool}: no content: {r}"))
            .iter()
            .filter_map(|c| c["text"].as_str())
            .collect::<Vec<_>>()
            .join("");
        (r["isError"] == json!(true), text)
    }

    fn initialize(&mut self) -> Value {
        let r = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "sr-it", "version": "0"},
            }),
        );
        let (code, _) = self
            .post(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                None,
            )
            .unwrap();
        assert!((200..300).contains(&code), "initialized: HTTP {code}");
        r
    }
}

/// The whole tool set against a running replicator with a file replica: the names and
/// arguments are Litestream's, each tool answers from this replicator's databases, and a
/// restore through MCP equals the source page for page, never over an existing file.
#[test]
fn serves_litestream_tools_over_streamable_http() {
    let w = Work::new();
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    let app = app_db(&db);
    insert_rows(&app, 200, 300);
    let port = free_port();
    let cfg = w.config(&format!(
        "mcp-addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let mut c = Client::new(port);
    eventually(Duration::from_secs(30), "the MCP server", || {
        c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "ping"}), None)
            .is_ok()
    });
    eventually(Duration::from_secs(30), "a first upload", || {
        replica_max_txid(&replica) >= 1
    });

    let init = c.initialize();
    assert_eq!(init["serverInfo"]["name"], "sqlite-replicate", "{init}");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");

    // tools/list: Litestream's names and arguments.
    let list = c.request("tools/list", json!({}));
    let tools = list["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, LITESTREAM_TOOLS);
    let args_of = |name: &str| -> (Vec<String>, Value) {
        let t = tools.iter().find(|t| t["name"] == name).unwrap();
        let mut a: Vec<String> = t["inputSchema"]["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        a.sort();
        (a, t["inputSchema"]["required"].clone())
    };
    assert_eq!(
        args_of("litestream_restore"),
        (
            [
                "config",
                "if_db_not_exists",
                "if_replica_exists",
                "o",
                "parallelism",
                "path",
                "timestamp",
                "txid"
            ]
            .map(String::from)
            .to_vec(),
            json!(["path"])
        )
    );
    assert_eq!(
        args_of("litestream_ltx"),
        (vec!["config".into(), "path".into()], json!(["path"]))
    );
    assert_eq!(
        args_of("litestream_reset"),
        (vec!["config".into(), "path".into()], json!(["path"]))
    );
    assert_eq!(
        args_of("litestream_status"),
        (vec!["config".into(), "path".into()], Value::Null)
    );
    assert_eq!(
        args_of("litestream_databases"),
        (vec!["config".into()], Value::Null)
    );
    assert_eq!(
        args_of("litestream_info"),
        (vec!["config".into()], Value::Null)
    );
    assert_eq!(args_of("litestream_version"), (vec![], Value::Null));

    let dbs = db.display().to_string();
    let (err, text) = c.call("litestream_version", json!({}));
    assert!(!err && text.starts_with("sqlite-replicate "), "{text}");

    let (err, text) = c.call("litestream_databases", json!({}));
    assert!(
        !err && text.contains(&dbs) && text.contains(&replica.display().to_string()),
        "{text}"
    );

    let (err, text) = c.call("litestream_status", json!({}));
    assert!(!err && text.contains(&dbs), "{text}");
    let (err, text) = c.call("litestream_status", json!({"path": dbs}));
    assert!(!err && text.contains(&dbs), "{text}");

    let (err, text) = c.call("litestream_ltx", json!({"path": dbs}));
    assert!(!err, "{text}");
    let l0_rows = text
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().next() == Some("0"))
        .count();
    assert!(l0_rows >= 1, "no level-0 file listed: {text}");

    let (err, text) = c.call("litestream_info", json!({}));
    assert!(!err, "{text}");
    for want in [
        "sqlite-replicate ",
        cfg.to_str().unwrap(),
        &dbs,
        "LTX files:",
        "min_txid",
    ] {
        assert!(text.contains(want), "info lacks {want:?}: {text}");
    }

    // More writes, then restores through MCP until one holds them all (each into a new
    // file): it must equal the source page for page.
    insert_rows(&app, 300, 500);
    app.execute("DELETE FROM t WHERE id % 7 = 0", []).unwrap();
    let want = pages_of_live(&db);
    let mut n = 0;
    let mut last = String::new();
    let mut restored = None;
    eventually(
        Duration::from_secs(60),
        "an MCP restore equal to the source",
        || {
            n += 1;
            let out = w.path(&format!("restored-{n}.db"));
            let (err, text) = c.call(
                "litestream_restore",
                json!({"path": dbs, "o": out.to_str().unwrap()}),
            );
            assert!(!err, "{text}");
            last = text;
            let same = pages_of_file(&out) == want;
            if same {
                restored = Some(out);
            }
            same
        },
    );
    let restored = restored.unwrap();
    assert!(last.contains("restored"), "{last}");
    assert_same_pages(&want, &pages_of_file(&restored), "MCP restore");

    // Never over an existing file: neither `o` nor the database itself is touched.
    let before = std::fs::read(&restored).unwrap();
    let (err, text) = c.call(
        "litestream_restore",
        json!({"path": dbs, "o": restored.to_str().unwrap()}),
    );
    assert!(err && text.contains("exists"), "{text}");
    assert_eq!(std::fs::read(&restored).unwrap(), before);
    let (err, text) = c.call("litestream_restore", json!({"path": dbs}));
    assert!(err && text.contains("exists"), "{text}");
    let (err, text) = c.call(
        "litestream_restore",
        json!({"path": dbs, "o": restored.to_str().unwrap(), "if_db_not_exists": true}),
    );
    assert!(!err && text.contains("already exists"), "{text}");
    assert_eq!(std::fs::read(&restored).unwrap(), before);

    // Bad arguments are tool errors that say what is wrong.
    let (err, text) = c.call("litestream_restore", json!({"o": "/tmp/x.db"}));
    assert!(err && text.contains("`path` is required"), "{text}");
    let (err, text) = c.call(
        "litestream_restore",
        json!({"path": dbs, "o": w.path("bad.db").to_str().unwrap(), "txid": "xyz"}),
    );
    assert!(err && text.contains("-txid"), "{text}");
    assert!(!w.path("bad.db").exists());

    // Reset is refused while the database replicates; replication goes on.
    let (err, text) = c.call("litestream_reset", json!({"path": dbs}));
    assert!(err, "{text}");

    // An unknown tool is a protocol error.
    let v = c.request_raw("tools/call", json!({"name": "nope", "arguments": {}}));
    assert!(v.get("error").is_some(), "{v}");

    // `config` may name the replicator's own file (however spelled), nothing else: a
    // file that is not a config would be quoted by the parser's errors.
    let same = format!("{}/./sr.yml", w.dir.path().display());
    let (err, text) = c.call("litestream_databases", json!({"config": same}));
    assert!(!err && text.contains(&dbs), "{text}");
    let other = w.path("other.txt");
    std::fs::write(&other, "root:x:0:0:PRIVATE-LINE\n").unwrap();
    let (err, text) = c.call(
        "litestream_databases",
        json!({"config": other.to_str().unwrap()}),
    );
    assert!(
        err && text.contains("only the replicator's own config file"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE-LINE"), "{text}");

    // DNS rebinding: a request naming another host is refused.
    let (code, _) = c
        .post(
            &json!({"jsonrpc": "2.0", "id": 99, "method": "tools/list"}),
            Some("evil.example:80"),
        )
        .unwrap();
    assert!((400..500).contains(&code), "HTTP {code} for a foreign Host");

    assert!(r.log_text().contains("serving MCP"), "{}", r.log_text());
    assert_eq!(r.stop(), 0);
}

/// No tool output carries a replica's credentials: an S3 replica whose uploads fail (no
/// server at its endpoint) is listed, reported, listed for LTX files and restored from,
/// and its keys appear in none of the answers.
#[test]
fn tool_output_names_no_secret() {
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    let (port, dead) = (free_port(), free_port());
    let cfg = w.config(&format!(
        "mcp-addr: 127.0.0.1:{port}\nshutdown-sync-timeout: 1s\ndbs:\n  - path: {}\n    replica:\n      url: s3://bkt/app?endpoint=http://127.0.0.1:{dead}&region=us-east-1\n      access-key-id: AKIDMCPTEST\n      secret-access-key: MCP-SECRET-VALUE\n",
        db.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let mut c = Client::new(port);
    eventually(Duration::from_secs(30), "the MCP server", || {
        c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "ping"}), None)
            .is_ok()
    });
    c.initialize();
    let dbs = db.display().to_string();
    let out = w.path("out.db");
    let calls = [
        ("litestream_databases", json!({})),
        ("litestream_status", json!({})),
        ("litestream_ltx", json!({"path": dbs})),
        ("litestream_info", json!({})),
        (
            "litestream_restore",
            json!({"path": dbs, "o": out.to_str().unwrap()}),
        ),
        (
            "litestream_ltx",
            json!({"path": format!("s3://bkt/app?endpoint=http://127.0.0.1:{dead}&region=us-east-1")}),
        ),
    ];
    for (tool, args) in calls {
        let (_, text) = c.call(tool, args.clone());
        assert!(
            !text.contains("MCP-SECRET-VALUE") && !text.contains("AKIDMCPTEST"),
            "{tool} {args}: {text}"
        );
        if tool == "litestream_databases" {
            assert!(text.contains("s3://bkt/app"), "{text}");
        }
    }
    assert!(!out.exists(), "restored from a replica that holds nothing");
    drop(r);
}

/// The processes whose parent is `pid`, with their command lines.
fn children_of(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push(String::from_utf8_lossy(&cmd).replace('\0', " "));
        }
    }
    out
}

/// A client that gives up (here: its request times out) cancels the call, and the
/// command the tool runs is killed rather than left running: an `ltx` listing of a
/// replica whose endpoint accepts connections and never answers.
#[test]
fn a_call_the_client_gives_up_kills_its_command() {
    let w = Work::new();
    let db = w.path("app.db");
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    // An endpoint that accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming() {
            held.push(c);
        }
    });
    let port = free_port();
    let cfg = w.config(&format!(
        "mcp-addr: 127.0.0.1:{port}\nshutdown-sync-timeout: 1s\ndbs:\n  - path: {}\n    replica:\n      url: s3://bkt/app?endpoint=http://127.0.0.1:{dead}&region=us-east-1\n      access-key-id: AKIDMCPTEST\n      secret-access-key: MCP-SECRET-VALUE\n",
        db.display()
    ));
    let r = Replicator::start(&w, &["-config", cfg.to_str().unwrap()]);
    let pid = r.child.id();
    let mut c = Client::with_timeout(port, Duration::from_secs(4));
    eventually(Duration::from_secs(30), "the MCP server", || {
        c.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "ping"}), None)
            .is_ok()
    });
    c.initialize();
    let dbs = db.display().to_string();
    let call = std::thread::spawn(move || {
        let msg = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "litestream_ltx", "arguments": {"path": dbs}}});
        c.post(&msg, None)
    });
    let is_ltx = |cmds: &[String]| cmds.iter().any(|c| c.contains(" ltx "));
    eventually(Duration::from_secs(4), "the tool's `ltx` command", || {
        is_ltx(&children_of(pid))
    });
    let answer = call.join().unwrap();
    assert!(answer.is_err(), "the listing answered: {answer:?}");
    eventually(
        Duration::from_secs(10),
        "the command killed after the client gave up",
        || !is_ltx(&children_of(pid)),
    );
    drop(r);
}

/// A bad `mcp-addr` stops the start with a config error naming the key; one that cannot
/// be bound (the port is taken) stops it naming the key and the address.
#[test]
fn bad_mcp_addr_is_a_config_error() {
    let w = Work::new();
    let (db, replica) = (w.path("app.db"), w.path("replica"));
    let app = app_db(&db);
    insert_rows(&app, 10, 100);
    let body = |addr: &str| {
        format!(
            "mcp-addr: '{addr}'\ndbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
            db.display(),
            replica.display()
        )
    };
    let cfg = w.config(&body("localhost"));
    let out = run(&["replicate", "-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("mcp-addr: \"localhost\" is not an address to listen on (no `:PORT`): expected HOST:PORT or :PORT, e.g. 127.0.0.1:3001"),
        "{err}"
    );
    assert!(!replica.exists(), "replicated despite the bad config");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = w.config(&body(&format!("127.0.0.1:{port}")));
    let out = run(&["replicate", "-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "mcp-addr 127.0.0.1:{port}: cannot listen on 127.0.0.1:{port}"
        )),
        "{err}"
    );
}
