//! Log setup: text or JSON, one event per line, on stderr (stdout stays clean for
//! `-json` output). The database and replica are fields of each event; secrets never are.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `level` is trace|debug|info|warn|error.
pub fn init(level: &str, format: Format) {
    let filter = EnvFilter::try_new(format!("{level},notify=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        Format::Text => b.try_init(),
        Format::Json => b.json().flatten_event(true).try_init(),
    };
}
