//! The man pages (`deploy/man/`) and shell completions (`deploy/completions/`, bash, zsh,
//! fish) are generated from the clap definition of [`crate::Cli`], and committed so the
//! Debian package and the container ship them without running the binary at build time.
//!
//! Owns: the list of generated files and the test that keeps them in sync. A change to a
//! command, flag or help text fails `generated_files_match_the_command_line` until they
//! are regenerated with
//! `SQLITE_REPLICATE_REGENERATE=1 cargo test -p sqlite-replicate generated_files`.
//!
//! Does not: run in the binary (clap_mangen and clap_complete are dev-dependencies only).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use clap::CommandFactory;

    const BIN: &str = "sqlite-replicate";

    /// Every generated file: its path under the repository root, and its text.
    fn generated() -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let cmd = crate::Cli::command();
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut man)
            .expect("render man page");
        out.push((PathBuf::from(format!("deploy/man/{BIN}.1")), man));
        // One page per command, `sqlite-replicate-restore(1)`, as git and cargo do.
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{BIN}-{}", sub.get_name());
            // clap takes `'static` names unless its "string" feature is on; a test may leak.
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            let sub = sub
                .clone()
                .name(leak(name.clone()))
                .bin_name(leak(format!("{BIN} {}", sub.get_name())));
            let mut page = Vec::new();
            clap_mangen::Man::new(sub)
                .render(&mut page)
                .expect("render man page");
            out.push((PathBuf::from(format!("deploy/man/{name}.1")), page));
        }
        use clap_complete::Shell;
        for (shell, file) in [
            (Shell::Bash, format!("{BIN}.bash")),
            (Shell::Zsh, format!("_{BIN}")),
            (Shell::Fish, format!("{BIN}.fish")),
        ] {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut crate::Cli::command(), BIN, &mut text);
            out.push((PathBuf::from(format!("deploy/completions/{file}")), text));
        }
        out
    }

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn generated_files_match_the_command_line() {
        let root = repo_root();
        let regenerate = std::env::var_os("SQLITE_REPLICATE_REGENERATE").is_some();
        let files = generated();
        let mut stale = Vec::new();
        for (path, text) in &files {
            let full = root.join(path);
            if std::fs::read(&full).ok().as_deref() == Some(&text[..]) {
                continue;
            }
            if regenerate {
                std::fs::write(&full, text).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
            } else {
                stale.push(path.display().to_string());
            }
        }
        // A page of a command since removed would be left behind: none may be there.
        for dir in ["deploy/man", "deploy/completions"] {
            for e in std::fs::read_dir(root.join(dir)).expect(dir) {
                let rel = Path::new(dir).join(e.expect(dir).file_name());
                if !files.iter().any(|(p, _)| *p == rel) {
                    stale.push(format!("{} (no longer generated)", rel.display()));
                }
            }
        }
        assert!(
            stale.is_empty(),
            "generated files out of date: {stale:?}; regenerate with \
             SQLITE_REPLICATE_REGENERATE=1 cargo test -p sqlite-replicate generated_files \
             (and delete those no longer generated)"
        );
    }
}
