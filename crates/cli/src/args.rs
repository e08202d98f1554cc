//! Litestream-style command lines: Go's flag package spells long flags with one dash
//! (`-config FILE`, `-txid=…`). Clap wants two, so known long flags are rewritten
//! before parsing; everything else passes through untouched. Help and usage errors show
//! them the way users type them, with one dash ([`single_dash`]; issue 25).

/// Long flags accepted with a single dash (every long flag of every command: a test in
/// `main` checks). Single-letter flags (`-o`, `-f`, `-h`) are
/// clap short flags already.
pub(crate) const LONG_FLAGS: &[&str] = &[
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
    // rekey
    "old-identity-file",
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

/// clap's text (help, version, usage errors) with our long flags spelt with one dash, as
/// Litestream and the README write them (`-config`; `--config` works too). Each flag
/// made one character shorter gets a space back in the gap before its description, so
/// the help's columns stay aligned.
pub fn single_dash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut l = String::with_capacity(line.len());
        let (mut rest, mut shortened, mut last) = (line, 0usize, 0usize);
        while let Some(at) = rest.find("--") {
            let (before, after) = rest.split_at(at);
            l.push_str(before);
            let name_len = after[2..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(after.len() - 2);
            let name = &after[2..2 + name_len];
            if LONG_FLAGS.contains(&name) {
                l.push('-');
                l.push_str(name);
                shortened += 1;
                last = l.len();
            } else {
                l.push_str(&after[..2 + name_len]);
            }
            rest = &after[2 + name_len..];
        }
        l.push_str(rest);
        if shortened > 0 {
            // The gap between the flag and its description, if this is a help row.
            if let Some(gap) = l[last..].find("  ") {
                l.insert_str(last + gap, &" ".repeat(shortened));
            }
        }
        out.push_str(&l);
    }
    out
}

/// Prints a clap "error" (help and version are ones too) with [`single_dash`] flags where
/// clap would, and returns the exit code clap would use.
pub fn print_clap_error(e: &clap::Error) -> std::process::ExitCode {
    use std::io::IsTerminal;
    let styled = e.render();
    let tty = if e.use_stderr() {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let text = single_dash(&if tty {
        styled.ansi().to_string()
    } else {
        styled.to_string()
    });
    if e.use_stderr() {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    std::process::ExitCode::from(e.exit_code().clamp(0, 255) as u8)
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
            single_dash("  -o <OUTPUT>          Output\n      --config <CONFIG>  File\n  -h, --help             Print help\n      --bogus  x\n--"),
            "  -o <OUTPUT>          Output\n      -config <CONFIG>   File\n  -h, -help              Print help\n      --bogus  x\n--"
        );
        assert_eq!(
            n(&["bin", "x", "-unknown", "--", "-config"]),
            ["bin", "x", "-unknown", "--", "-config"]
        );
    }
}
