//! Reading a `serde_norway::Value` tree strictly: every mapping's keys are checked
//! against the keys allowed there, and every value is read as one type, each error
//! naming its key path (`dbs[0].replica.sync-interval`) and the value.
//!
//! Walked by hand rather than with `#[derive(Deserialize)]`, because replica settings
//! appear both at the top level and in replicas (serde's `deny_unknown_fields` does not
//! combine with `flatten`), and because the paths make better errors.
//!
//! Scalars are read the way Go's yaml.v2 reads them into Litestream's structs, so files
//! written for Litestream mean the same here: any scalar is accepted as a string (an empty
//! string counts as absent, like Go's zero value), `yes`/`no`/`on`/`off` are booleans,
//! numbers may be quoted. Durations are the exception: a bare integer other than `0` is
//! an error, since Go would read `60` as 60 nanoseconds, which no one means.

use std::time::Duration;

use serde_norway::Value;

use super::duration::{self, parse_duration};
use super::error::{ConfigError, ErrorKind};
use super::secret::Secret;
use super::size::parse_size;

/// A mapping of the config, with its key path.
pub(crate) struct Map<'a> {
    path: String,
    entries: Vec<(&'a str, &'a Value)>,
}

/// Keys that are valid elsewhere, for the "belongs under ..." hint.
pub(crate) struct Elsewhere<'k> {
    pub keys: &'k [&'k str],
    pub note: &'k str,
}

impl<'a> Map<'a> {
    /// `value` as a mapping; `null` (an empty section) is an empty mapping.
    pub fn new(value: &'a Value, path: &str) -> Result<Map<'a>, ConfigError> {
        let mut entries = Vec::new();
        match value {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, v) in m {
                    let Value::String(k) = k else {
                        let key = match k {
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            other => render(other),
                        };
                        return Err(ConfigError::new(
                            path,
                            ErrorKind::UnknownKey {
                                key,
                                suggestion: Some("keys are words like `path`".into()),
                            },
                        ));
                    };
                    entries.push((k.as_str(), v));
                }
            }
            other => return Err(invalid(path, other, "a mapping (`key: value` lines)", None)),
        }
        Ok(Map {
            path: path.to_string(),
            entries,
        })
    }

    /// The mapping without its `x-...` keys: extension fields, free for YAML anchors
    /// (`x-replica: &defaults ...`), as in docker-compose files.
    pub fn without_extensions(mut self) -> Map<'a> {
        self.entries.retain(|(k, _)| !k.starts_with("x-"));
        self
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` in this mapping.
    pub fn key_path(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// Errors on the first key (in file order) that is not in `allowed`, suggesting the
    /// closest allowed key, or where the key belongs if it is one of `elsewhere`.
    pub fn check_keys(
        &self,
        allowed: &[&[&str]],
        elsewhere: &[Elsewhere<'_>],
    ) -> Result<(), ConfigError> {
        let known = |k: &str| allowed.iter().any(|set| set.contains(&k));
        for (key, _) in &self.entries {
            if known(key) {
                continue;
            }
            let candidates = allowed.iter().flat_map(|s| s.iter().copied());
            let suggestion = match elsewhere.iter().find(|e| e.keys.contains(key)) {
                Some(e) => Some(e.note.to_string()),
                None => closest(key, candidates).map(|c| format!("did you mean {c:?}?")),
            };
            return Err(ConfigError::new(
                &self.path,
                ErrorKind::UnknownKey {
                    key: key.to_string(),
                    suggestion,
                },
            ));
        }
        Ok(())
    }

    /// The keys present, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The value of `key`, unless absent or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Any scalar, as text; an empty string is absent.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(invalid(&self.key_path(key), other, "a string", None)),
        };
        Ok(Some(s).filter(|s| !s.is_empty()))
    }

    /// Like [`Map::string`]; the value never appears in an error (only non-scalars fail).
    pub fn secret(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        Ok(self.string(key)?.map(Secret::new))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let b = match v {
            Value::Bool(b) => Some(*b),
            // YAML 1.1 spellings, which Go's yaml.v2 reads as booleans.
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "on" => Some(true),
                "false" | "no" | "n" | "off" => Some(false),
                "" => return Ok(None),
                _ => None,
            },
            _ => None,
        };
        b.map(Some)
            .ok_or_else(|| invalid(&self.key_path(key), v, "a boolean (true or false)", None))
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => parse_duration(s)
                .map(Some)
                .map_err(|e| e.at(&self.key_path(key))),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(Duration::ZERO)),
            Value::Number(n) => Err(invalid(
                &self.key_path(key),
                v,
                duration::EXPECTED,
                Some(format!(
                    "add a unit, e.g. {n}s (a bare number would be nanoseconds in Litestream)"
                )),
            )),
            other => Err(invalid(
                &self.key_path(key),
                other,
                duration::EXPECTED,
                None,
            )),
        }
    }

    /// A non-negative integer, possibly quoted, `_` separators allowed.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if s.is_empty() => return Ok(None),
            Value::String(s) => s.replace('_', "").parse::<u64>().ok(),
            _ => None,
        };
        n.map(Some)
            .ok_or_else(|| invalid(&self.key_path(key), v, "a whole number", None))
    }

    pub fn u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        let Some(n) = self.u64(key)? else {
            return Ok(None);
        };
        u32::try_from(n).map(Some).map_err(|_| {
            invalid(
                &self.key_path(key),
                self.get(key).unwrap_or(&Value::Null),
                "a whole number",
                Some("it is too large".into()),
            )
        })
    }

    /// Bytes: an integer, or a number with a unit (`64MiB`).
    pub fn size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if s.is_empty() => return Ok(None),
            Value::String(s) => parse_size(s),
            _ => None,
        };
        n.map(Some).ok_or_else(|| {
            invalid(
                &self.key_path(key),
                v,
                "a size in bytes (e.g. 67108864 or 64MiB)",
                None,
            )
        })
    }

    pub fn map(&self, key: &str) -> Result<Option<Map<'a>>, ConfigError> {
        self.get(key)
            .map(|v| Map::new(v, &self.key_path(key)))
            .transpose()
    }

    /// A list, each item with its path (`key[i]`).
    pub fn seq(&self, key: &str) -> Result<Option<Vec<(String, &'a Value)>>, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Sequence(items) = v else {
            return Err(invalid(&self.key_path(key), v, "a list (`- ` items)", None));
        };
        let path = self.key_path(key);
        Ok(Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v))
                .collect(),
        ))
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// An "is not" error for `value` at `path`.
pub(crate) fn invalid(
    path: &str,
    value: &Value,
    expected: &str,
    detail: Option<String>,
) -> ConfigError {
    ConfigError::new(
        path,
        ErrorKind::InvalidValue {
            value: render(value),
            expected: expected.to_string(),
            detail,
        },
    )
}

/// A value as the user wrote it, for messages. Only scalars are shown.
pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// The allowed key closest to `key`: same after lowercasing and `_`→`-`, else within a
/// small edit distance, else one that is a prefix of the other (`directory` → `dir`).
fn closest<'k>(key: &str, candidates: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', ' '], "-");
    let key_n = norm(key);
    let limit = if key_n.len() <= 4 { 1 } else { 2 };
    let scored: Vec<(usize, &str, String)> = candidates
        .map(|c| (edit_distance(&key_n, &norm(c)), c, norm(c)))
        .collect();
    let near = scored
        .iter()
        .filter(|(d, _, _)| *d <= limit)
        .min_by_key(|(d, _, _)| *d);
    let prefix = || {
        scored
            .iter()
            .filter(|(_, _, c)| {
                c.len() >= 3
                    && key_n.len() >= 3
                    && (key_n.starts_with(c.as_str()) || c.starts_with(key_n.as_str()))
            })
            .min_by_key(|(d, _, _)| *d)
    };
    near.or_else(prefix).map(|(_, c, _)| *c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_of(yaml: &str) -> Value {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn edit_distances_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let keys = [
            "sync-interval",
            "snapshot-interval",
            "path",
            "url",
            "type",
            "retention",
        ];
        let cases: &[(&str, Option<&str>)] = &[
            ("sync_interval", Some("sync-interval")),
            ("Sync-Interval", Some("sync-interval")),
            ("sync-intervl", Some("sync-interval")),
            ("pth", Some("path")),
            ("urls", Some("url")),
            ("retension", Some("retention")),
            ("pathname", Some("path")),
            ("snapshot", Some("snapshot-interval")),
            ("bucket", None),
            ("xyz", None),
        ];
        for (key, want) in cases {
            assert_eq!(closest(key, keys.iter().copied()), *want, "{key}");
        }
    }

    #[test]
    fn typed_reads_name_the_key_and_value() {
        let v = map_of("d: 5 minutes\nn: 60\nz: 0\nb: maybe\nyes_: yes\ni: -3\ns: [1]\nsz: 64MiB\nbig: 99999999999\nq: '12'\ne: ''\nt: !x 1\n");
        let m = Map::new(&v, "dbs[1]").unwrap();
        let cases: Vec<(Result<(), ConfigError>, &str)> = vec![
            (m.duration("d").map(drop), r#"dbs[1].d: "5 minutes" is not a duration (e.g. 1m30s): unknown unit " minutes" (ns, us, ms, s, m, h)"#),
            (m.duration("n").map(drop), "dbs[1].n: 60 is not a duration (e.g. 1m30s): add a unit, e.g. 60s (a bare number would be nanoseconds in Litestream)"),
            (m.bool("b").map(drop), r#"dbs[1].b: "maybe" is not a boolean (true or false)"#),
            (m.u64("i").map(drop), "dbs[1].i: -3 is not a whole number"),
            (m.string("s").map(drop), "dbs[1].s: a list is not a string"),
            (m.u32("big").map(drop), "dbs[1].big: 99999999999 is not a whole number: it is too large"),
            (m.size("b").map(drop), r#"dbs[1].b: "maybe" is not a size in bytes (e.g. 67108864 or 64MiB)"#),
            (m.string("t").map(drop), "dbs[1].t: a value tagged !x is not a string"),
            (Map::new(&Value::Bool(true), "dbs[0]").map(drop), "dbs[0]: true is not a mapping (`key: value` lines)"),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
        assert_eq!(m.duration("z").unwrap(), Some(Duration::ZERO));
        assert_eq!(m.bool("yes_").unwrap(), Some(true));
        assert_eq!(m.size("sz").unwrap(), Some(64 << 20));
        assert_eq!(m.u32("q").unwrap(), Some(12));
        assert_eq!(m.string("e").unwrap(), None);
        assert_eq!(m.string("n").unwrap().as_deref(), Some("60"));
        assert_eq!(m.string("missing").unwrap(), None);
    }

    #[test]
    fn unknown_keys_are_reported_in_file_order_with_hints() {
        let v = map_of("path: x\nsync_interval: 1s\nbogus: 2\n");
        let m = Map::new(&v, "dbs[0].replica").unwrap();
        let err = m
            .check_keys(&[&["path", "sync-interval"]], &[])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"dbs[0].replica: unknown key "sync_interval" (did you mean "sync-interval"?)"#
        );

        let v = map_of("path: x\nbucket: b\n");
        let m = Map::new(&v, "dbs[0]").unwrap();
        let elsewhere = [Elsewhere {
            keys: &["bucket"],
            note: "it belongs under `replica:`",
        }];
        let err = m.check_keys(&[&["path"]], &elsewhere).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"dbs[0]: unknown key "bucket" (it belongs under `replica:`)"#
        );

        let v = map_of("1: x\n");
        let Err(err) = Map::new(&v, "") else {
            panic!("accepted")
        };
        assert_eq!(
            err.to_string(),
            r#"unknown key "1" (keys are words like `path`)"#
        );
    }
}
