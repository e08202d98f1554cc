//! The `-exec` child of `replicate` and `standby`: parse its command line shell-style,
//! start it, forward SIGINT/SIGTERM to it, and stop it (SIGTERM, then SIGKILL after
//! [`CHILD_STOP_GRACE`]) when a lease is lost. What to do before and after (start
//! replicating, final sync, exit status) is the caller's.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::failover;

/// How the `-exec` child's run ended.
pub enum ChildEnd {
    /// It exited with this status (128+signal when it died of a signal).
    Exited(u8),
    /// A lease was lost (the reason): the child was stopped.
    LeaseLost(String),
}

/// How long the child has to exit after SIGTERM, when a lease is lost, before SIGKILL.
pub const CHILD_STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the child, forwarding SIGINT/SIGTERM to it, until it exits or a lease is lost:
/// then the child is stopped at once (SIGTERM, SIGKILL after [`CHILD_STOP_GRACE`]), since
/// its writes can no longer be replicated (issue 18).
pub async fn run_child(
    cmd: &str,
    lost: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<ChildEnd> {
    let words = split_command(cmd)?;
    let (prog, rest) = words.split_first().context("-exec: empty command")?;
    let mut child = tokio::process::Command::new(prog)
        .args(rest)
        .spawn()
        .with_context(|| format!("-exec: starting {prog}"))?;
    let pid = child.id().map(|p| p as i32);
    // Every signal we get from now on goes to the child (one that came before it started
    // too: the count is already above zero, so the first wait returns at once).
    let mut signals = crate::signals::subscribe()?;
    signals.mark_changed();
    let status = loop {
        tokio::select! {
            s = child.wait() => break s?,
            Ok(()) = signals.changed() => {
                let last = signals.borrow_and_update().last;
                if let Some(kind) = last {
                    forward(pid, kind.number());
                }
            }
            reason = failover::lease_lost(lost) => {
                warn!(pid = pid.unwrap_or(0), "stopping the child: the lease is lost");
                forward(pid, libc::SIGTERM);
                if tokio::time::timeout(CHILD_STOP_GRACE, child.wait()).await.is_err() {
                    warn!(pid = pid.unwrap_or(0), grace = ?CHILD_STOP_GRACE, "the child ignored SIGTERM: killing it");
                    child.start_kill().context("-exec: killing the child")?;
                    child.wait().await?;
                }
                info!("child stopped");
                return Ok(ChildEnd::LeaseLost(reason));
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.saturating_add(s as u8),
        _ => 1,
    };
    info!(status = code, "child exited");
    // Give the capture loop a moment to see the child's last commits before stopping.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(ChildEnd::Exited(code))
}

fn forward(pid: Option<i32>, sig: i32) {
    if let Some(p) = pid {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

/// Checks a command line before anything starts: it splits (quotes closed) into at least
/// one word.
pub fn check_command(cmd: &str) -> anyhow::Result<()> {
    if split_command(cmd)?.is_empty() {
        bail!("-exec: empty command");
    }
    Ok(())
}

/// Splits a command line shell-style: whitespace separates words, single and double
/// quotes group, backslash escapes the next character (not inside single quotes).
pub fn split_command(s: &str) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => bail!("-exec: unterminated single quote in {s:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) => cur.push(x),
                            None => bail!("-exec: trailing backslash in {s:?}"),
                        },
                        Some(x) => cur.push(x),
                        None => bail!("-exec: unterminated double quote in {s:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => bail!("-exec: trailing backslash in {s:?}"),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split_command;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_command("java -jar 'my app.jar' --name \"a b\" c\\ d").unwrap(),
            ["java", "-jar", "my app.jar", "--name", "a b", "c d"]
        );
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
        assert!(split_command("x 'open").is_err());
    }
}
