//! What a database opened through the VFS asks for: its URI parameters (and the
//! environment's defaults), checked and typed.
//!
//! Owns: the parameter names, their defaults and their error messages. Pure: it reads
//! parameters through a lookup function and does no I/O.
//!
//! | parameter | environment default | meaning |
//! |---|---|---|
//! | `replica` | `SQLITE_REPLICATE_VFS_REPLICA` | replica URL (`s3://`, `file://`, ...) or directory |
//! | `config` | `SQLITE_REPLICATE_CONFIG` | config file: endpoint and credentials for `replica`, or the replicas of the database named by the file name |
//! | `txid` | | open as of this TXID (16 hex digits, as `restore -txid`) |
//! | `timestamp` | | open as of this time (RFC 3339, as `restore -timestamp`) |
//! | `poll` | `SQLITE_REPLICATE_VFS_POLL` | how old the known state may get before a transaction start looks for new files (default 1s) |
//! | `cache_size` | `SQLITE_REPLICATE_VFS_CACHE_SIZE` | memory cache bound, bytes (suffixes K, M, G, KiB, MiB, GiB; default 64MiB) |
//! | `cache_dir` | `SQLITE_REPLICATE_VFS_CACHE_DIR` | disk cache directory, shared by processes (none by default) |
//! | `cache_dir_size` | `SQLITE_REPLICATE_VFS_CACHE_DIR_SIZE` | disk cache bound (default 1GiB; needs `cache_dir`) |
//! | `hydrate` | `SQLITE_REPLICATE_VFS_HYDRATE` | `1`: download the whole database in the background (into `cache_dir`, else a temp directory), then read from that copy (default `0`) |

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use engine::history::plan::Target;
use ltx::TxId;

/// Default poll interval (Litestream's VFS polls every second too).
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Default memory cache bound.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
/// The smallest cache accepted: a few of the largest pages.
pub const MIN_CACHE_BYTES: u64 = 1 << 20;
/// The default bound of a disk cache directory (`cache_dir_size`).
pub const DEFAULT_CACHE_DIR_BYTES: u64 = 1 << 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub replica: Option<String>,
    pub config: Option<PathBuf>,
    pub target: Target,
    pub poll: Duration,
    pub cache_bytes: u64,
    /// The disk cache: its directory and bound.
    pub cache_dir: Option<(PathBuf, u64)>,
    pub hydrate: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sqlite-replicate VFS: parameter {param}={value:?}: {reason}")]
pub struct OptionsError {
    pub param: &'static str,
    pub value: String,
    pub reason: String,
}

impl Options {
    /// Reads the parameters through `uri` (a URI parameter by name) and `env`.
    pub fn parse(
        uri: &dyn Fn(&str) -> Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Options, OptionsError> {
        let get =
            |p: &str, e: Option<&str>| uri(p).or_else(|| e.and_then(env)).filter(|v| !v.is_empty());
        let err = |param, value: &str, reason: String| OptionsError {
            param,
            value: value.to_string(),
            reason,
        };
        let target = match (uri("txid"), uri("timestamp")) {
            (Some(t), Some(_)) => {
                return Err(err(
                    "txid",
                    &t,
                    "txid and timestamp cannot be used together".into(),
                ))
            }
            (Some(t), None) => {
                Target::TxId(TxId::parse_hex16(&t).map_err(|e| err("txid", &t, e.to_string()))?)
            }
            (None, Some(ts)) => {
                parse_timestamp(&ts).map_err(|reason| err("timestamp", &ts, reason))?
            }
            (None, None) => Target::Latest,
        };
        let poll = match get("poll", Some("SQLITE_REPLICATE_VFS_POLL")) {
            None => DEFAULT_POLL,
            Some(v) => parse_duration(&v).ok_or_else(|| {
                err(
                    "poll",
                    &v,
                    "expected a duration such as 500ms, 1s or 1m".into(),
                )
            })?,
        };
        let cache_bytes = match get("cache_size", Some("SQLITE_REPLICATE_VFS_CACHE_SIZE")) {
            None => DEFAULT_CACHE_BYTES,
            Some(v) => {
                let n = parse_size(&v).ok_or_else(|| {
                    err(
                        "cache_size",
                        &v,
                        "expected a size such as 64MiB or 1G".into(),
                    )
                })?;
                if n < MIN_CACHE_BYTES {
                    return Err(err("cache_size", &v, "the smallest cache is 1MiB".into()));
                }
                n
            }
        };
        let dir_size = match get(
            "cache_dir_size",
            Some("SQLITE_REPLICATE_VFS_CACHE_DIR_SIZE"),
        ) {
            None => None,
            Some(v) => Some(
                parse_size(&v)
                    .filter(|n| *n >= MIN_CACHE_BYTES)
                    .ok_or_else(|| {
                        err(
                            "cache_dir_size",
                            &v,
                            "expected a size of at least 1MiB, such as 512MiB or 4G".into(),
                        )
                    })?,
            ),
        };
        let cache_dir = match (
            get("cache_dir", Some("SQLITE_REPLICATE_VFS_CACHE_DIR")),
            dir_size,
        ) {
            (Some(d), n) => Some((PathBuf::from(d), n.unwrap_or(DEFAULT_CACHE_DIR_BYTES))),
            (None, Some(n)) => {
                return Err(err(
                    "cache_dir_size",
                    &n.to_string(),
                    "bounds the disk cache: give cache_dir too".into(),
                ))
            }
            (None, None) => None,
        };
        let hydrate = match get("hydrate", Some("SQLITE_REPLICATE_VFS_HYDRATE")).as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(err("hydrate", v, "expected 1 or 0".into())),
        };
        Ok(Options {
            replica: get("replica", Some("SQLITE_REPLICATE_VFS_REPLICA")),
            config: get("config", Some("SQLITE_REPLICATE_CONFIG")).map(PathBuf::from),
            target,
            poll,
            cache_bytes,
            cache_dir,
            hydrate,
        })
    }
}

/// An RFC 3339 time as `restore -timestamp` takes it, as a target; the error says what
/// is expected.
pub fn parse_timestamp(s: &str) -> Result<Target, String> {
    let t: jiff::Timestamp = s
        .trim()
        .parse()
        .map_err(|_| "not RFC 3339 (e.g. 2026-01-02T15:04:05Z)".to_string())?;
    Ok(Target::Timestamp(SystemTime::from(t)))
}

/// `500ms`, `2s`, `1m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Bytes, with an optional K/M/G (powers of 1024) or KiB/MiB/GiB/KB/MB/GB suffix.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let at = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..at].parse().ok()?;
    let mult: u64 = match s[at..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Options, OptionsError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::parse(&|k| map.get(k).cloned(), &|_| None)
    }

    #[test]
    fn parameters_and_defaults() {
        let o = parse(&[("replica", "s3://b/p")]).unwrap();
        assert_eq!(o.replica.as_deref(), Some("s3://b/p"));
        assert_eq!(
            (o.target, o.poll, o.cache_bytes),
            (Target::Latest, DEFAULT_POLL, 64 << 20)
        );
        let o = parse(&[
            ("txid", "000000000000000a"),
            ("poll", "250ms"),
            ("cache_size", "8MiB"),
        ])
        .unwrap();
        assert_eq!(o.target, Target::TxId(TxId::new(10).unwrap()));
        assert_eq!(o.poll, Duration::from_millis(250));
        assert_eq!(o.cache_bytes, 8 << 20);
        let o = parse(&[("timestamp", "2026-01-02T15:04:05Z")]).unwrap();
        assert!(matches!(o.target, Target::Timestamp(_)));
        let o = parse(&[("cache_dir", "/tmp/c")]).unwrap();
        assert_eq!(o.cache_dir, Some((PathBuf::from("/tmp/c"), 1 << 30)));
        let o = parse(&[("cache_dir", "/tmp/c"), ("cache_dir_size", "2MiB")]).unwrap();
        assert_eq!(o.cache_dir, Some((PathBuf::from("/tmp/c"), 2 << 20)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_size("1G"), Some(1 << 30));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (pairs, param) in [
            (&[("txid", "12")][..], "txid"),
            (
                &[
                    ("txid", "000000000000000a"),
                    ("timestamp", "2026-01-02T15:04:05Z"),
                ][..],
                "txid",
            ),
            (&[("timestamp", "yesterday")][..], "timestamp"),
            (&[("poll", "soon")][..], "poll"),
            (&[("cache_size", "lots")][..], "cache_size"),
            (&[("cache_size", "1000")][..], "cache_size"),
            (&[("cache_dir_size", "1G")][..], "cache_dir_size"),
            (&[("hydrate", "yes")][..], "hydrate"),
            (
                &[("cache_dir", "/tmp/c"), ("cache_dir_size", "1k")][..],
                "cache_dir_size",
            ),
        ] {
            let e = parse(pairs).unwrap_err();
            assert_eq!(e.param, param, "{e}");
            assert!(e.to_string().contains(param));
        }
    }
}
