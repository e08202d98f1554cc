//! Litestream-style command lines: Go's flag package spells long flags with one dash
//! (`-config FILE`, `-txid=…`). Clap wants two, so known long flags are rewritten
//! before parsing; everything else passes through untouched.

/// Long flags accepted with a single dash. Single-letter flags (`-o`, `-f`, `-h`) are
/// clap short flags already.
const LONG_FLAGS: &[&str] = &[
    "config",
    "exec",
    "once",
    "force-snapshot",
    "enforce-retention",
    "log-level",
    "no-expand-env",
    "restore-if-db-not-exists",
    "txid",
    "timestamp",
    "if-db-not-exists",
    "if-replica-exists",
    "dry-run",
    "force",
    "json",
    "integrity-check",
    "parallelism",
    "follow-interval",
    "replica",
    "generation",
    "level",
    "verbose",
    "legacy-page-encoding",
    "help",
    "version",
    // check
    "wal-warn-size",
    "wal-fail-size",
    "skew-warn",
    "skew-fail",
    "no-quick-check",
    // verify
    "random-point",
    "scratch",
    "source",
    // control socket commands
    "wait",
    "timeout",
    "socket",
    // service
    "name",
    "last",
];

/// Rewrites `-name` and `-name=value` to `--name…` for known long flags.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut after_dashdash = false;
    for a in args {
        if after_dashdash {
            out.push(a);
            continue;
        }
        if a == "--" {
            after_dashdash = true;
            out.push(a);
            continue;
        }
        if let Some(rest) = a.strip_prefix('-') {
            if !rest.starts_with('-') {
                let name = rest.split('=').next().unwrap_or(rest);
                if LONG_FLAGS.contains(&name) {
                    out.push(format!("-{a}"));
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: &[&str]) -> Vec<String> {
        normalize(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_style_flags_become_clap_style() {
        assert_eq!(
            n(&[
                "bin",
                "restore",
                "-config",
                "c.yml",
                "-o",
                "out.db",
                "-txid=0000000000000003",
                "--force",
                "/db"
            ]),
            [
                "bin",
                "restore",
                "--config",
                "c.yml",
                "-o",
                "out.db",
                "--txid=0000000000000003",
                "--force",
                "/db"
            ]
        );
        assert_eq!(
            n(&["bin", "replicate", "-exec", "app -config x"]),
            ["bin", "replicate", "--exec", "app -config x"]
        );
        // Unknown single-dash words and values after -- are left alone.
        assert_eq!(
            n(&["bin", "x", "-unknown", "--", "-config"]),
            ["bin", "x", "-unknown", "--", "-config"]
        );
    }
}
