//! Litestream keys that sqlite-replicate knows but does not act on yet. A key we accept
//! must do something (parity issue 18), so each of these is an error naming the key,
//! whose it is (top level, database, replica) and what to do, unless its value asks for
//! what sqlite-replicate does anyway (`auto-recover: false`).
//!
//! Owns: the list of such keys and the check of one mapping (or of a URL's settings).
//! Does not: read the keys sqlite-replicate does act on (`build.rs`, `settings.rs`);
//! keys that cannot apply at all (another replica type's, Litestream 0.3's) stay
//! warnings there, as Litestream ignores them too.

use serde_norway::Value;

use super::error::{ConfigError, ErrorKind};
use super::settings::Settings;
use super::yaml::Map;

/// Which value of a key is harmless: it asks for what sqlite-replicate does anyway.
#[derive(Clone, Copy)]
enum Harmless {
    /// None: any value is refused (an empty string counts as absent, so an unset
    /// `$VAR` expands to nothing).
    Nothing,
    /// `false`.
    False,
    /// `true`.
    True,
}

struct Key {
    name: &'static str,
    harmless: Harmless,
    /// What sqlite-replicate lacks, completing "sqlite-replicate ...".
    missing: &'static str,
}

const fn key(name: &'static str, harmless: Harmless, missing: &'static str) -> Key {
    Key {
        name,
        harmless,
        missing,
    }
}

/// Top-level keys (Litestream's global settings).
const TOP: &[Key] = &[
    key(
        "verify-compaction",
        Harmless::False,
        "does not check levels after compaction",
    ),
    key("mcp-addr", Harmless::Nothing, "has no MCP server"),
    key(
        "shutdown-sync-interval",
        Harmless::Nothing,
        "has no pause between final-sync retries (the final sync waits, up to `shutdown-sync-timeout`, for uploads that retry on their own)",
    ),
];

/// `logging:` keys.
const LOGGING: &[Key] = &[
    key(
        "stderr",
        Harmless::True,
        "always logs to stderr, never to stdout",
    ),
    key(
        "source",
        Harmless::False,
        "does not add source locations to log lines",
    ),
];

/// Database keys.
const DB: &[Key] = &[
    key(
        "truncate-page-n",
        Harmless::Nothing,
        "has no emergency TRUNCATE checkpoint (`check -wal-warn-size` reports a large WAL)",
    ),
    key(
        "max-sync-wal-bytes",
        Harmless::Nothing,
        "does not read the WAL in chunks of a set size",
    ),
];

/// Replica settings, in a replica or at the top level as defaults.
const SETTINGS: &[Key] = &[
    key(
        "auto-recover",
        Harmless::False,
        "does not reset a replica's local state after errors",
    ),
    key(
        "max-sync-ltx-files",
        Harmless::Nothing,
        "does not batch L0 files per upload (each capture is uploaded as it comes)",
    ),
    key(
        "require-content-md5",
        Harmless::False,
        "sends no Content-MD5 headers (requests carry a SHA-256 payload checksum instead)",
    ),
];

/// Where a mapping is, for [`check`].
#[derive(Clone, Copy)]
pub(crate) enum Section {
    /// The top level (global keys and replica defaults).
    Top,
    /// `logging:`.
    Logging,
    /// A `dbs:` entry.
    Db,
    /// A replica.
    Replica,
}

/// Errors on the first key of `m` (in file order) that sqlite-replicate does not act on,
/// unless its value is harmless. `place` says whose the mapping is, for the message
/// (`top level`, `database /var/lib/app.db`, `replica s3`).
pub(crate) fn check(m: &Map<'_>, section: Section, place: &str) -> Result<(), ConfigError> {
    let tables: &[&[Key]] = match section {
        Section::Top => &[TOP, SETTINGS],
        Section::Logging => &[LOGGING],
        Section::Db => &[DB],
        Section::Replica => &[SETTINGS],
    };
    for name in m.keys() {
        let Some(k) = tables
            .iter()
            .flat_map(|t| t.iter())
            .find(|k| k.name == name)
        else {
            continue;
        };
        let (refused, setting) = match k.harmless {
            // Values are not shown: an MCP URL may carry a token.
            Harmless::Nothing => {
                let given = match m.get(name) {
                    Some(Value::String(v)) => !v.is_empty(),
                    other => other.is_some(),
                };
                (given, format!("`{name}`"))
            }
            Harmless::False => (m.bool(name)? == Some(true), format!("`{name}: true`")),
            Harmless::True => (m.bool(name)? == Some(false), format!("`{name}: false`")),
        };
        if refused {
            return Err(ConfigError::new(
                m.key_path(name),
                ErrorKind::NotSupportedYet {
                    setting,
                    place: place.to_string(),
                    missing: k.missing,
                },
            ));
        }
    }
    Ok(())
}

/// The same check for what a replica URL's query set (`requireContentMD5=true`); `at` is
/// the key path of the URL (empty for a command-line URL).
pub(crate) fn check_url(s: &Settings, at: &str, place: &str) -> Result<(), ConfigError> {
    if s.require_content_md5 == Some(true) {
        let k = SETTINGS
            .iter()
            .find(|k| k.name == "require-content-md5")
            .expect("listed");
        return Err(ConfigError::new(
            at,
            ErrorKind::NotSupportedYet {
                setting: "`requireContentMD5=true` in the URL".to_string(),
                place: place.to_string(),
                missing: k.missing,
            },
        ));
    }
    Ok(())
}
