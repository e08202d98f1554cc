//! The SFTP backend's edge: each failure of a request becomes one
//! [`StorageError`](crate::storage::StorageError) kind, with the client's error as its
//! source.
//!
//! Owns: [`Failure`], what one SFTP operation can run into (a status the server answered,
//! a lost connection, or a failure we classified ourselves), and [`Failure::classify`].
//! SFTP v3 statuses carry no errno: OpenSSH answers a full disk with the generic
//! `SSH_FX_FAILURE`, so `NoSpace` needs the caller's `statvfs` check (see `sftp.rs`).
//! Callers read the variant, never the text.

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::StatusCode;

use crate::storage::StorageError;

/// What went wrong in one operation, before it is named and classified.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server answered with a status other than OK.
    Status { code: StatusCode, message: String },
    /// The connection broke or a reply did not come in time: the session is unusable.
    Lost(String),
    /// Retrying will not help (a server limit, a malformed reply we cannot use).
    Permanent(String),
    /// Already classified (connect, auth, host key, range checks).
    Storage(StorageError),
    /// One of the above, with the client's error it was read from (the error's source).
    Caused(Box<Failure>, SftpError),
}

impl Failure {
    /// Whether the connection should be dropped and a new one made for the next request.
    pub(super) fn is_lost(&self) -> bool {
        match self {
            Failure::Caused(f, _) => f.is_lost(),
            f => matches!(f, Failure::Lost(_)),
        }
    }

    pub(super) fn is_status(&self, want: StatusCode) -> bool {
        match self {
            Failure::Caused(f, _) => f.is_status(want),
            f => matches!(f, Failure::Status { code, .. } if *code == want),
        }
    }

    /// The message of a lost connection, if that is what this is.
    pub(super) fn lost_message(&self) -> Option<&str> {
        match self {
            Failure::Caused(f, _) => f.lost_message(),
            Failure::Lost(m) => Some(m),
            _ => None,
        }
    }

    /// Names the failure: `location` is the replica, `what` the file or operation.
    pub(super) fn classify(self, location: &str, what: impl Into<String>) -> StorageError {
        let location = location.to_string();
        let what = what.into();
        match self {
            Failure::Caused(f, source) => f.classify(&location, what).with_source(source),
            Failure::Storage(e) => e,
            Failure::Permanent(detail) => StorageError::permanent(location, what, detail),
            Failure::Lost(detail) => {
                StorageError::transient(location, what, format!("SFTP connection lost: {detail}"))
            }
            Failure::Status { code, message } => {
                let detail = if message.is_empty() || message == code.to_string() {
                    code.to_string()
                } else {
                    format!("{code}: {message}")
                };
                match code {
                    StatusCode::NoSuchFile => StorageError::not_found(location, what),
                    StatusCode::PermissionDenied => StorageError::permission_denied(
                        location,
                        what,
                        format!(
                            "{detail}; check the replica path and its permissions for this user"
                        ),
                    ),
                    StatusCode::NoConnection | StatusCode::ConnectionLost => {
                        StorageError::transient(location, what, detail)
                    }
                    _ => StorageError::permanent(location, what, detail),
                }
            }
        }
    }
}

impl From<SftpError> for Failure {
    fn from(e: SftpError) -> Failure {
        let f = match &e {
            SftpError::Status(s) => Failure::Status {
                code: s.status_code,
                message: s.error_message.trim().replace(['\n', '\r'], " "),
            },
            SftpError::Timeout => Failure::Lost("no reply in time".into()),
            SftpError::IO(m) => Failure::Lost(m.clone()),
            SftpError::UnexpectedBehavior(m) => Failure::Lost(m.clone()),
            SftpError::UnexpectedPacket => Failure::Lost("unexpected reply packet".into()),
            SftpError::Limited(m) => Failure::Permanent(format!("over the server's limits: {m}")),
        };
        Failure::Caused(Box::new(f), e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Failure {
        Failure::Storage(e)
    }
}

/// Whether a russh error means the network or the peer went away (worth retrying), rather
/// than a protocol or configuration problem.
pub(super) fn ssh_is_transient(e: &russh::Error) -> bool {
    use russh::Error as E;
    matches!(
        e,
        E::IO(_)
            | E::HUP
            | E::Disconnect
            | E::ConnectionTimeout
            | E::KeepaliveTimeout
            | E::InactivityTimeout
            | E::Elapsed(_)
            | E::SendError
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ErrorKind;
    use russh_sftp::protocol::Status;

    fn status(code: StatusCode, msg: &str) -> Failure {
        Failure::from(SftpError::Status(Status {
            id: 1,
            status_code: code,
            error_message: msg.into(),
            language_tag: "en".into(),
        }))
    }

    #[test]
    fn statuses_and_lost_connections() {
        let c = |f: Failure| f.classify("sftp://u@h:22/p", "L0/x.ltx");
        assert!(c(status(StatusCode::NoSuchFile, "No such file")).is_not_found());
        assert!(matches!(
            c(status(StatusCode::PermissionDenied, "Permission denied")).kind(),
            ErrorKind::PermissionDenied
        ));
        let e = c(status(StatusCode::Failure, "Failure"));
        assert!(
            e.kind() == ErrorKind::Permanent && e.detail() == "Failure",
            "{e}"
        );
        assert!(c(Failure::from(SftpError::Timeout)).is_retryable());
        let lost = Failure::from(SftpError::UnexpectedBehavior("session closed".into()));
        assert!(lost.is_lost());
        let e = c(lost);
        assert!(
            e.is_retryable() && e.to_string().contains("sftp://u@h:22/p"),
            "{e}"
        );
        assert!(!status(StatusCode::Failure, "x").is_lost());
    }
}
