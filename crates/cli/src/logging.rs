//! Log setup: text or JSON, one event per line, on stderr (stdout stays clean for
//! `-json` output), or on stdout for the long-running commands when the config says
//! `logging.stderr: false` (Litestream's default output; [`Output`]). The database and
//! replica are fields of each event; secrets never are. `logging.source: true` adds the
//! source file and line of each event.
//!
//! The level (`-log-level`, `logging.level`, `$LOG_LEVEL`) applies to our own crates
//! only; every other crate (the HTTP, TLS and SSH libraries) logs warnings and errors,
//! so a debug run shows our events, not their protocol internals (security issue 17:
//! those can include request headers). `$SQLITE_REPLICATE_LOG`, when set, is used as
//! given instead (an `EnvFilter` such as `debug` or `info,russh=debug`): an explicit
//! choice of what to see, third-party crates included. Not `$RUST_LOG`, which is often set
//! for other programs (our own test harness sets it for every replicator it starts), so
//! it never turned library logging on behind the user's back, and still does not.
//!
//! On Windows, a process running as a service ([`log_to_event_log`]) also writes every
//! event at info and above to the Event Log (`crate::eventlog`), besides the output above.

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// The variable holding an explicit filter, which replaces the level's.
const FILTER_ENV: &str = "SQLITE_REPLICATE_LOG";

/// The crates `level` applies to: this binary, the engine and the LTX format.
const OUR_CRATES: &[&str] = &["sqlite_replicate", "engine", "ltx"];

/// Where log lines go and what they carry besides the event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Write to stdout instead of stderr (`logging.stderr: false`).
    pub stdout: bool,
    /// Add the source file and line of each event (`logging.source: true`).
    pub source: bool,
}

#[cfg(windows)]
static EVENT_SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// From now on [`init_to`] adds the Event Log under `source` (Windows services).
#[cfg(windows)]
pub fn log_to_event_log(source: &str) {
    let _ = EVENT_SOURCE.set(source.to_string());
}

/// Installs the global subscriber on stderr. `level` is trace|debug|info|warn|error.
pub fn init(level: &str, format: Format) {
    init_to(level, format, Output::default());
}

/// [`init`], writing where `out` says.
pub fn init_to(level: &str, format: Format, out: Output) {
    let explicit = std::env::var(FILTER_ENV).ok();
    let (filter, bad) = match EnvFilter::try_new(directives(level, explicit.as_deref())) {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::try_new(directives(level, None))
                .unwrap_or_else(|_| EnvFilter::new(directives("info", None))),
            Some(e),
        ),
    };
    // Colours only for a terminal: a file or a container's log collector gets plain text.
    let (writer, ansi) = if out.stdout {
        (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )
    } else {
        (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    };
    #[cfg(windows)]
    if let Some(source) = EVENT_SOURCE.get() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let (event_log, open_error) = match crate::eventlog::EventLogLayer::new(source) {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        };
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .with_file(out.source)
            .with_line_number(out.source);
        let registry = tracing_subscriber::registry().with(filter).with(event_log);
        let _ = match format {
            Format::Text => registry.with(fmt).try_init(),
            Format::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
        };
        if let Some(e) = bad {
            tracing::warn!("${FILTER_ENV} is not a log filter ({e}); using the log level {level}");
        }
        if let Some(e) = open_error {
            tracing::warn!(error = %e, source = %source, "cannot open the Event Log; logging to the usual output only");
        }
        return;
    }
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .with_file(out.source)
        .with_line_number(out.source);
    let _ = match format {
        Format::Text => b.try_init(),
        Format::Json => b.json().flatten_event(true).try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!("${FILTER_ENV} is not a log filter ({e}); using the log level {level}");
    }
}

/// The filter: `explicit` when given (not empty), else `level` for [`OUR_CRATES`] and
/// warn (or `level`, if quieter) for everything else.
fn directives(level: &str, explicit: Option<&str>) -> String {
    if let Some(r) = explicit.map(str::trim).filter(|r| !r.is_empty()) {
        return r.to_string();
    }
    let others = if level.eq_ignore_ascii_case("error") {
        "error"
    } else {
        "warn"
    };
    let mut d = others.to_string();
    for c in OUR_CRATES {
        d.push_str(&format!(",{c}={level}"));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a subscriber with `directives` prints for one event per (target, level).
    fn printed(directives: &str) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::try_new(directives).unwrap())
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "engine::replicate", "ours-debug");
            tracing::debug!(target: "sqlite_replicate::setup", "cli-debug");
            tracing::debug!(target: "russh::client", "russh-debug");
            tracing::debug!(target: "hyper_util::client", "hyper-debug");
            tracing::debug!(target: "reqwest::connect", "reqwest-debug");
            tracing::warn!(target: "russh::client", "russh-warn");
            tracing::info!(target: "engine::replicate", "ours-info");
        });
        let out = buf.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_level_applies_to_our_crates_only() {
        let out = printed(&directives("debug", None));
        for want in ["ours-debug", "cli-debug", "russh-warn", "ours-info"] {
            assert!(out.contains(want), "{want} missing:\n{out}");
        }
        for unwanted in ["russh-debug", "hyper-debug", "reqwest-debug"] {
            assert!(!out.contains(unwanted), "{unwanted} printed:\n{out}");
        }

        let out = printed(&directives("error", None));
        assert!(
            !out.contains("russh-warn") && !out.contains("ours-info"),
            "{out}"
        );

        // SQLITE_REPLICATE_LOG is the user's explicit choice, libraries included.
        let out = printed(&directives("info", Some("debug")));
        assert!(
            out.contains("russh-debug") && out.contains("ours-debug"),
            "{out}"
        );
        assert_eq!(directives("info", Some("  ")), directives("info", None));
    }
}
