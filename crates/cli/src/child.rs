//! The `-exec` child of `replicate` and `standby`: parse its command line shell-style,
//! start it, pass shutdown signals on to it, and stop it when a lease is lost. What to do
//! before and after (start replicating, final sync, exit status) is the caller's.
//!
//! On Unix the child gets our SIGINT/SIGTERM, and a lost lease sends it SIGTERM, then
//! SIGKILL after [`CHILD_STOP_GRACE`]. On Windows the child runs in a kill-on-close job
//! object (`engine::platform::job`), so it never outlives us; it shares our
//! console, so a console Ctrl-C or Ctrl-Break reaches it directly; after any shutdown
//! request (Ctrl-C, Ctrl-Close, the service's Stop) it has [`CHILD_STOP_GRACE`] to exit,
//! then the job is terminated; a lost lease terminates the job at once (there is no
//! gentle signal to send a process that may not share a console with us).

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

/// How long the child has to exit after a stop request before it is killed.
pub const CHILD_STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the child, passing shutdown signals on to it, until it exits or a lease is lost:
/// then the child is stopped at once, since its writes can no longer be replicated
/// (issue 18).
pub async fn run_child(
    cmd: &str,
    lost: &mut watch::Receiver<Option<String>>,
) -> anyhow::Result<ChildEnd> {
    let words = split_command(cmd)?;
    let (prog, rest) = words.split_first().context("-exec: empty command")?;
    let mut command = tokio::process::Command::new(prog);
    command.args(rest);
    #[cfg(windows)]
    command.creation_flags(engine::platform::job::SPAWN_FLAGS);
    let mut child = command
        .spawn()
        .with_context(|| format!("-exec: starting {prog}"))?;
    let pid = child.id().unwrap_or(0);
    let stopper = Stopper::new(&mut child).await?;
    // Every signal we get from now on goes to the child (one that came before it started
    // too: the count is already above zero, so the first wait returns at once).
    let mut signals = crate::signals::subscribe()?;
    signals.mark_changed();
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        let deadline = async {
            match kill_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            s = child.wait() => break s?,
            Ok(()) = signals.changed() => {
                let last = signals.borrow_and_update().last;
                if let Some(kind) = last {
                    if stopper.forward(kind) && kill_at.is_none() {
                        kill_at = Some(tokio::time::Instant::now() + CHILD_STOP_GRACE);
                    }
                }
            }
            () = deadline => {
                warn!(pid, grace = ?CHILD_STOP_GRACE, "the child did not exit after the stop request: killing it");
                kill_at = None;
                stopper.kill(&mut child)?;
            }
            reason = failover::lease_lost(lost) => {
                warn!(pid, "stopping the child: the lease is lost");
                stopper.stop_now(&mut child).await?;
                info!("child stopped");
                return Ok(ChildEnd::LeaseLost(reason));
            }
        }
    };
    let code = engine::platform::process::exit_code(&status);
    info!(status = code, "child exited");
    // Give the capture loop a moment to see the child's last commits before stopping.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(ChildEnd::Exited(code))
}

/// How the child is told to stop, per OS.
struct Stopper {
    #[cfg(unix)]
    pid: Option<u32>,
    #[cfg(windows)]
    job: engine::platform::job::Job,
}

impl Stopper {
    #[cfg(unix)]
    async fn new(child: &mut tokio::process::Child) -> anyhow::Result<Stopper> {
        Ok(Stopper { pid: child.id() })
    }

    #[cfg(windows)]
    async fn new(child: &mut tokio::process::Child) -> anyhow::Result<Stopper> {
        match engine::platform::job::Job::contain(child) {
            Ok(job) => Ok(Stopper { job }),
            Err(e) => {
                // Still suspended: it has run nothing.
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(e).context("-exec: putting the child in a job object")
            }
        }
    }

    /// Passes a shutdown signal on; true when the child must be killed if it has not
    /// exited after [`CHILD_STOP_GRACE`].
    #[cfg(unix)]
    fn forward(&self, kind: crate::signals::Kind) -> bool {
        use engine::platform::process::{send_stop, StopSignal};
        if let Some(pid) = self.pid {
            send_stop(
                pid,
                match kind {
                    crate::signals::Kind::Terminate => StopSignal::Terminate,
                    crate::signals::Kind::Interrupt => StopSignal::Interrupt,
                },
            );
        }
        // As before: a child that handles SIGTERM by itself decides when it ends.
        false
    }

    /// The console's Ctrl-C/Ctrl-Break already reached the child; nothing reaches it for
    /// a service Stop or Ctrl-Close: either way it is killed after the grace period.
    #[cfg(windows)]
    fn forward(&self, _kind: crate::signals::Kind) -> bool {
        true
    }

    fn kill(&self, child: &mut tokio::process::Child) -> anyhow::Result<()> {
        #[cfg(windows)]
        {
            let _ = child;
            self.job
                .terminate(1)
                .context("-exec: terminating the child's job")
        }
        #[cfg(unix)]
        {
            child.start_kill().context("-exec: killing the child")
        }
    }

    /// Stops the child now (lost lease): SIGTERM then SIGKILL after the grace period on
    /// Unix; the job terminated at once on Windows.
    async fn stop_now(&self, child: &mut tokio::process::Child) -> anyhow::Result<()> {
        #[cfg(unix)]
        if let Some(pid) = self.pid {
            engine::platform::process::send_stop(
                pid,
                engine::platform::process::StopSignal::Terminate,
            );
            if tokio::time::timeout(CHILD_STOP_GRACE, child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
            warn!(pid, grace = ?CHILD_STOP_GRACE, "the child ignored SIGTERM: killing it");
        }
        self.kill(child)?;
        child.wait().await?;
        Ok(())
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
