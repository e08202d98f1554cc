//! The MCP tools: Litestream's names, arguments and argument types (its `mcp.go`), so a
//! client's configuration and prompts carry over. Each answers with the text of this
//! binary's own command, run as a child process with the replicator's config, as
//! Litestream's tools run its CLI. (Litestream reads any file a `config` argument names;
//! here it must name the replicator's own config, or a client could read any file through
//! the parser's errors.)
//!
//! | tool | command |
//! |---|---|
//! | `litestream_databases {config}` | `databases` |
//! | `litestream_status {config, path}` | `status [path]` |
//! | `litestream_ltx {path, config}` | `ltx path` |
//! | `litestream_restore {path, o, config, txid, timestamp, parallelism, if_db_not_exists, if_replica_exists}` | `restore` |
//! | `litestream_reset {path, config}` | `reset path` (refused while the database replicates) |
//! | `litestream_info {config}` | version, config path, `databases`, then `ltx` of each database |
//! | `litestream_version` | answered here |
//!
//! A restore never replaces a file: `-force` is never passed, and an output that exists
//! is refused before the command runs (with `if_db_not_exists`, it is skipped). A failed
//! command is a tool error carrying the command's output (its errors name no secret;
//! replica URLs are shown without credentials). Arguments become `--name=value` and the
//! path comes after `--`, so no value is read as a flag. A call the client gives up
//! (it disconnects, or sends `notifications/cancelled`) kills its command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::Options;

/// Tool commands running at once; further calls wait their turn.
pub const MAX_PROCESSES: usize = 2;
/// A tool's output is cut after this many bytes (a replica with many files lists long).
const MAX_OUTPUT: usize = 1 << 20;

/// The tools, shared by every request.
#[derive(Clone)]
pub struct Tools(Arc<Inner>);

struct Inner {
    exe: PathBuf,
    opts: Options,
    processes: Semaphore,
}

impl Tools {
    pub fn new(exe: PathBuf, opts: Options) -> Self {
        Tools(Arc::new(Inner {
            exe,
            opts,
            processes: Semaphore::new(MAX_PROCESSES),
        }))
    }
}

/// An argument: its name, JSON type and description.
type Arg = (&'static str, &'static str, &'static str);

const CONFIG: Arg = (
    "config",
    "string",
    "Path to the config file. Optional; only the config the replicator runs with is accepted.",
);

/// Each tool: name, description, arguments, required arguments.
const TOOLS: &[(&str, &str, &[Arg], &[&str])] = &[
    (
        "litestream_info",
        "Get a summary of the replicator: version, config path, databases and their replicas, and the LTX files of each database's replica.",
        &[CONFIG],
        &[],
    ),
    (
        "litestream_databases",
        "List the databases in the config and their replicas.",
        &[CONFIG],
        &[],
    ),
    (
        "litestream_restore",
        "Restore a database from its replica to a new file (never over an existing one), verified before it is put in place.",
        &[
            ("path", "string", "Database path (from the config) or replica URL."),
            ("o", "string", "Output path for the restored database; it must not exist. Default: the database path (refused when it exists). Required for a replica URL."),
            CONFIG,
            ("txid", "string", "Restore up to and including this transaction ID (16 hex digits). Optional."),
            ("timestamp", "string", "Restore the state as of this time (RFC 3339). Optional."),
            ("parallelism", "string", "Number of downloads in flight. Optional."),
            ("if_db_not_exists", "boolean", "Succeed without restoring if the output already exists. Optional."),
            ("if_replica_exists", "boolean", "Succeed without restoring if the replica holds no backup. Optional."),
        ],
        &["path"],
    ),
    (
        "litestream_ltx",
        "List the LTX files of a database's replica (or a replica URL), per level: level, min_txid, max_txid, size, created.",
        &[
            ("path", "string", "Database path (from the config) or replica URL."),
            CONFIG,
        ],
        &["path"],
    ),
    (
        "litestream_version",
        "Print the sqlite-replicate version.",
        &[],
        &[],
    ),
    (
        "litestream_status",
        "Show replication status per database and replica: local and replicated transaction IDs, lag, WAL size, last error.",
        &[
            CONFIG,
            ("path", "string", "Only this database (a path from the config). Optional."),
        ],
        &[],
    ),
    (
        "litestream_reset",
        "Clear a database's local replication state so the next start writes a full image. The database file and replicas are untouched. Refused while the database is being replicated.",
        &[
            ("path", "string", "Database path to reset."),
            CONFIG,
        ],
        &["path"],
    ),
];

/// The tool list, as `tools/list` answers it.
pub fn tool_list() -> Vec<Tool> {
    TOOLS
        .iter()
        .map(|(name, description, args, required)| {
            let props: serde_json::Map<String, Value> = args
                .iter()
                .map(|(n, t, d)| (n.to_string(), json!({"type": t, "description": d})))
                .collect();
            let mut schema = JsonObject::new();
            schema.insert("type".into(), json!("object"));
            schema.insert("properties".into(), Value::Object(props));
            if !required.is_empty() {
                schema.insert("required".into(), json!(required));
            }
            Tool::new(*name, *description, Arc::new(schema))
        })
        .collect()
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "sqlite-replicate",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "SQLite replication (Litestream-compatible): list databases and replicas, show status and LTX files, restore a database to a new file.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some((_, _, args, required)) = TOOLS.iter().find(|t| t.0 == request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}", request.name),
                None,
            ));
        };
        let given = Args::check(request.arguments.unwrap_or_default(), args, required);
        let result = match given {
            Err(e) => Err(e),
            // Cancelled when the client goes away or sends `notifications/cancelled`:
            // dropping the call kills the command it runs.
            Ok(given) => tokio::select! {
                r = self.call(&request.name, &given) => r,
                _ = context.ct.cancelled() => Err("cancelled".into()),
            },
        };
        Ok(match result {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(text) => CallToolResult::error(vec![ContentBlock::text(text)]),
        }
        .into())
    }
}

/// A call's arguments, checked against the tool's: known names, the right JSON types,
/// the required ones present. An empty string counts as absent.
struct Args(JsonObject);

impl Args {
    fn check(given: JsonObject, known: &[Arg], required: &[&str]) -> Result<Args, String> {
        let names = || known.iter().map(|a| a.0).collect::<Vec<_>>().join(", ");
        for (name, v) in &given {
            let Some((_, ty, _)) = known.iter().find(|a| a.0 == name) else {
                return Err(format!(
                    "unknown argument `{name}` (this tool takes: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        names()
                    }
                ));
            };
            let fits = match *ty {
                "boolean" => v.is_boolean(),
                _ => v.is_string(),
            };
            if !fits && !v.is_null() {
                return Err(format!("argument `{name}` must be a {ty}"));
            }
        }
        let args = Args(given);
        for r in required {
            if args.str(r).is_none() {
                return Err(format!("argument `{r}` is required"));
            }
        }
        Ok(args)
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn flag(&self, name: &str) -> bool {
        self.0.get(name).and_then(Value::as_bool).unwrap_or(false)
    }
}

impl Tools {
    async fn call(&self, tool: &str, a: &Args) -> Result<String, String> {
        match tool {
            "litestream_version" => Ok(version()),
            "litestream_databases" => self.run("databases", a, &[], None).await,
            "litestream_status" => self.run("status", a, &[], a.str("path")).await,
            "litestream_ltx" => self.run("ltx", a, &[], a.str("path")).await,
            "litestream_reset" => self.run("reset", a, &[], a.str("path")).await,
            "litestream_restore" => self.restore(a).await,
            "litestream_info" => self.info(a).await,
            other => Err(format!("unknown tool {other:?}")),
        }
    }

    async fn restore(&self, a: &Args) -> Result<String, String> {
        let path = a.str("path").unwrap_or_default();
        let output = match a.str("o") {
            Some(o) => Some(PathBuf::from(o)),
            None if path.contains("://") => None, // `restore` says -o is needed.
            None => Some(PathBuf::from(path)),
        };
        if let Some(out) = &output {
            if !a.flag("if_db_not_exists") && std::fs::symlink_metadata(out).is_ok() {
                return Err(format!(
                    "{} exists: a restore through MCP never replaces a file; give `o` a path that does not exist",
                    out.display()
                ));
            }
        }
        let mut flags = Vec::new();
        if let Some(o) = a.str("o") {
            flags.push(format!("-o={o}"));
        }
        for (arg, flag) in [
            ("txid", "txid"),
            ("timestamp", "timestamp"),
            ("parallelism", "parallelism"),
        ] {
            if let Some(v) = a.str(arg) {
                flags.push(format!("--{flag}={v}"));
            }
        }
        for (arg, flag) in [
            ("if_db_not_exists", "if-db-not-exists"),
            ("if_replica_exists", "if-replica-exists"),
        ] {
            if a.flag(arg) {
                flags.push(format!("--{flag}"));
            }
        }
        self.run("restore", a, &flags, Some(path)).await
    }

    async fn info(&self, a: &Args) -> Result<String, String> {
        let mut out = String::from("=== sqlite-replicate status report ===\n\n");
        out.push_str("Version:\n");
        out.push_str(&version());
        out.push_str("\nConfig path:\n");
        match self.config(a)? {
            Some(c) => out.push_str(&format!("{}\n\n", c.display())),
            None => out.push_str("(none)\n\n"),
        }
        out.push_str("Databases:\n");
        out.push_str(&self.run("databases", a, &[], None).await?);
        let listed = self.run("databases", a, &["--json".into()], None).await?;
        let paths: Vec<String> = serde_json::from_str::<Vec<Value>>(&listed)
            .map_err(|e| format!("reading the database list: {e}"))?
            .iter()
            .filter_map(|d| d.get("path").and_then(Value::as_str).map(String::from))
            .collect();
        out.push_str("\nLTX files:\n");
        for p in paths {
            out.push_str(&format!("Database: {p}\n"));
            match self.run("ltx", a, &[], Some(&p)).await {
                Ok(t) => out.push_str(&t),
                Err(e) => out.push_str(&format!("cannot list LTX files: {e}\n")),
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// The config the command reads: the replicator's. A `config` argument is accepted
    /// when it names that same file: reading any other file would let a client read files
    /// through the config parser's errors, which quote what they cannot parse.
    fn config(&self, a: &Args) -> Result<Option<PathBuf>, String> {
        let ours = self.0.opts.config.clone();
        let Some(given) = a.str("config") else {
            return Ok(ours);
        };
        let same = |p: &Path| std::fs::canonicalize(p).ok();
        match &ours {
            Some(o) if same(Path::new(given)).is_some() && same(Path::new(given)) == same(o) => {
                Ok(ours)
            }
            Some(o) => Err(format!(
                "`config` {given:?}: only the replicator's own config file ({}) is read through MCP; leave `config` out",
                o.display()
            )),
            None => Err(format!(
                "`config` {given:?}: only the replicator's own config file is read through MCP, and it runs without one"
            )),
        }
    }

    /// Runs `sqlite-replicate COMMAND [--config=..] [--no-expand-env] FLAGS [-- TARGET]`
    /// and returns what it printed (stdout, then stderr); a failure is an `Err` with that
    /// output and the exit status.
    async fn run(
        &self,
        command: &str,
        a: &Args,
        flags: &[String],
        target: Option<&str>,
    ) -> Result<String, String> {
        let mut argv: Vec<OsString> = vec![command.into()];
        if let Some(c) = self.config(a)? {
            let mut f = OsString::from("--config=");
            f.push(c);
            argv.push(f);
        }
        if !self.0.opts.expand_env {
            argv.push("--no-expand-env".into());
        }
        argv.extend(flags.iter().map(OsString::from));
        if let Some(t) = target {
            argv.push("--".into());
            argv.push(t.into());
        }
        let _turn = self
            .0
            .processes
            .acquire()
            .await
            .map_err(|_| "the MCP server is shutting down".to_string())?;
        tracing::debug!(command, "MCP tool runs a command");
        // Dropped (the call was cancelled): the command is killed. A restore killed so
        // leaves no output (it renames a verified temp file into place), only that temp
        // file, which the next restore to the same path removes.
        let out = tokio::process::Command::new(&self.0.exe)
            .args(&argv)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run `{command}`: {e}"))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let text = truncate(text);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "{}\n(`{command}` failed: {})",
                text.trim_end(),
                out.status
            ))
        }
    }
}

fn version() -> String {
    format!("sqlite-replicate {}\n", env!("CARGO_PKG_VERSION"))
}

/// Cuts `text` at [`MAX_OUTPUT`] bytes (on a character boundary), saying how much is left.
fn truncate(mut text: String) -> String {
    if text.len() <= MAX_OUTPUT {
        return text;
    }
    let mut cut = MAX_OUTPUT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let rest = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("\n[output cut: {rest} more bytes]\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_are_checked() {
        let restore = TOOLS.iter().find(|t| t.0 == "litestream_restore").unwrap();
        let check = |v: Value| Args::check(obj(v), restore.2, restore.3).map(|_| ());
        assert_eq!(
            check(json!({"path": "/a.db", "if_db_not_exists": true})),
            Ok(())
        );
        assert_eq!(
            check(json!({"o": "/b.db"})),
            Err("argument `path` is required".into())
        );
        assert_eq!(
            check(json!({"path": ""})),
            Err("argument `path` is required".into())
        );
        assert_eq!(
            check(json!({"path": "/a.db", "txid": 5})),
            Err("argument `txid` must be a string".into())
        );
        assert_eq!(
            check(json!({"path": "/a.db", "force": true})),
            Err("unknown argument `force` (this tool takes: path, o, config, txid, timestamp, parallelism, if_db_not_exists, if_replica_exists)".into())
        );
        let version = TOOLS.iter().find(|t| t.0 == "litestream_version").unwrap();
        assert_eq!(
            Args::check(obj(json!({"x": 1})), version.2, version.3).map(|_| ()),
            Err("unknown argument `x` (this tool takes: none)".into())
        );
    }

    #[test]
    fn long_output_is_cut() {
        let s = "é".repeat(MAX_OUTPUT);
        let t = truncate(s);
        assert!(t.len() < MAX_OUTPUT + 100);
        assert!(t.ends_with("more bytes]\n"), "{}", &t[t.len() - 50..]);
        assert_eq!(truncate("short".into()), "short");
    }
}
