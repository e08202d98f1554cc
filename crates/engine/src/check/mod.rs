//! The pre-flight check: is a database ready to be replicated, and does each replica work?
//!
//! Owns: the [`Finding`] (level, which check, what is wrong, what to do), the
//! [`Thresholds`] and the pure rules that turn a measured figure into a level
//! ([`wal_level`], [`skew_level`]). [`database`] judges a database (`sqlite::inspect`'s
//! facts, file permissions); [`replica`] proves a replica with a round trip of a scratch
//! object and measures the storage's clock against ours.
//!
//! Does not: change anything (the only write is the replica's scratch object, removed
//! again), print (the CLI's `check` command does), or decide the exit status.
//!
//! Per-connection settings (`synchronous`, `wal_autocheckpoint`) cannot be seen from
//! another process: the check reports what a new connection gets and says that the
//! application must set its own; it warns only when even that default is unsafe.

pub mod database;
pub mod replica;

use std::time::Duration;

/// How bad a finding is. Ordered: `Ok < Warn < Fail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// Which check: `journal-mode`, `wal-size`, `replica-round-trip`, ...
    pub check: &'static str,
    /// What was found, with the figures and paths involved.
    pub message: String,
    /// What to do about it (for warnings and failures; sometimes a note for `ok`).
    pub action: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            check,
            message: message.into(),
            action: None,
        }
    }

    pub fn warn(
        check: &'static str,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Finding {
        Finding {
            level: Level::Warn,
            check,
            message: message.into(),
            action: Some(action.into()),
        }
    }

    pub fn fail(
        check: &'static str,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Finding {
        Finding {
            level: Level::Fail,
            check,
            message: message.into(),
            action: Some(action.into()),
        }
    }

    pub fn with_action(mut self, action: impl Into<String>) -> Finding {
        self.action = Some(action.into());
        self
    }
}

/// Where warnings and failures start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// A WAL this large warns: checkpoints are falling behind. Default 100 MiB.
    pub wal_warn_bytes: u64,
    /// A WAL this large fails: checkpoints are not happening at all (the replicator's
    /// emergency TRUNCATE, `truncate-page-n`, fires near 500 MB at 4 KiB pages). Default 1 GiB.
    pub wal_fail_bytes: u64,
    /// Storage clock this far from ours warns. Default 5 s.
    pub skew_warn: Duration,
    /// Storage clock this far from ours fails: `restore -timestamp` and retention compare
    /// our clock with times the storage records. Default 30 s.
    pub skew_fail: Duration,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            wal_warn_bytes: 100 << 20,
            wal_fail_bytes: 1 << 30,
            skew_warn: Duration::from_secs(5),
            skew_fail: Duration::from_secs(30),
        }
    }
}

/// The level of a WAL of `size` bytes.
pub fn wal_level(size: u64, t: &Thresholds) -> Level {
    if size >= t.wal_fail_bytes {
        Level::Fail
    } else if size >= t.wal_warn_bytes {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// The level of a measured clock offset whose true value may be up to `uncertainty`
/// smaller: only the part beyond the uncertainty counts.
pub fn skew_level(offset: Duration, uncertainty: Duration, t: &Thresholds) -> Level {
    let surely = offset.saturating_sub(uncertainty);
    if surely >= t.skew_fail {
        Level::Fail
    } else if surely >= t.skew_warn {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// `123 B`, `4.0 KiB`, `100.0 MiB`, for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_levels() {
        let t = Thresholds::default();
        let cases = [
            (0, Level::Ok),
            ((100 << 20) - 1, Level::Ok),
            (100 << 20, Level::Warn),
            ((1 << 30) - 1, Level::Warn),
            (1 << 30, Level::Fail),
        ];
        for (size, want) in cases {
            assert_eq!(wal_level(size, &t), want, "{size}");
        }
    }

    #[test]
    fn skew_levels_discount_the_uncertainty() {
        let t = Thresholds::default();
        let s = Duration::from_secs;
        let cases = [
            (s(0), s(1), Level::Ok),
            (s(5), s(1), Level::Ok),
            (s(6), s(1), Level::Warn),
            (s(30), s(1), Level::Warn),
            (s(31), s(1), Level::Fail),
            (s(40), s(20), Level::Warn),
        ];
        for (offset, unc, want) in cases {
            assert_eq!(skew_level(offset, unc, &t), want, "{offset:?} ± {unc:?}");
        }
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(100 << 20), "100.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
