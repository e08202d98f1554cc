//! Litestream keys that sqlite-replicate knows but does not act on yet. A key we accept
//! must do something (parity issue 18), so each of these is an error naming the key,
//! whose it is (top level, database, replica) and what to do, unless its value asks for
//! what sqlite-replicate does anyway (`watch: false`, `auto-recover: false`).
//!
//! Owns: the list of such keys and the check of one mapping.
//! Does not: read the keys sqlite-replicate does act on (`build.rs`, `settings.rs`);
//! keys that cannot apply at all (another replica type's, Litestream 0.3's) stay
//! warnings there, as Litestream ignores them too.

use serde_norway::Value;

use super::error::{ConfigError, ErrorKind};
use super::yaml::Map;

/// Which value of a key is harmless: it asks for what sqlite-replicate does anyway.
#[derive(Clone, Copy)]
enum Harmless {
    /// None: any value is refused (an empty string counts as absent, so an unset
    /// `$VAR` expands to nothing).
    Nothing,
    /// `false`.
    False,
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
const TOP: &[Key] = &[];

/// Database keys.
const DB: &[Key] = &[key(
    "watch",
    Harmless::False,
    "does not watch a directory for new databases (it is scanned when replication starts)",
)];

/// Replica settings, in a replica or at the top level as defaults.
const SETTINGS: &[Key] = &[];

/// Where a mapping is, for [`check`].
#[derive(Clone, Copy)]
pub(crate) enum Section {
    /// The top level (global keys and replica defaults).
    Top,
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
