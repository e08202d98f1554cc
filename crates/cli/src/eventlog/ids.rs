//! The Event Log's event IDs: one table, used by the tracing layer (`super`) and by
//! `build.rs`, which compiles it into the executable's message table.

#![allow(dead_code)]

/// The event type an event is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Error,
    Warning,
    Information,
}

/// The service started (its config loaded, replication starting).
pub const SERVICE_STARTED: u32 = 1000;
/// The service stopped, after its final sync.
pub const SERVICE_STOPPED: u32 = 1001;
/// A database started replicating.
pub const DB_REPLICATING: u32 = 1002;
/// A shutdown request came: the final sync starts.
pub const FINAL_SYNC: u32 = 1003;
/// Other information.
pub const INFO_OTHER: u32 = 1999;
/// A replica failed (upload, listing, retention...): the event names the replica.
pub const REPLICA_ERROR: u32 = 2000;
/// A restore failed.
pub const RESTORE_ERROR: u32 = 2001;
/// A database failed (capture, checkpoint, its file): the event names the database.
pub const DB_ERROR: u32 = 2002;
/// The service could not run (bad config, nothing to replicate) or ended with an error.
pub const SERVICE_ERROR: u32 = 2003;
/// Another error.
pub const ERROR_OTHER: u32 = 2999;
/// A replica warning (a retried upload, a slow replica).
pub const REPLICA_WARNING: u32 = 3000;
/// A database warning.
pub const DB_WARNING: u32 = 3001;
/// Another warning.
pub const WARNING_OTHER: u32 = 3999;

/// Every event ID with its type and meaning: the table in the docs, and the message
/// table `build.rs` compiles (each ID's text is the event's own message).
pub const EVENT_IDS: &[(u32, Type, &str)] = &[
    (SERVICE_STARTED, Type::Information, "service started"),
    (
        SERVICE_STOPPED,
        Type::Information,
        "service stopped after its final sync",
    ),
    (
        DB_REPLICATING,
        Type::Information,
        "a database started replicating",
    ),
    (FINAL_SYNC, Type::Information, "shutting down: final sync"),
    (INFO_OTHER, Type::Information, "other information"),
    (REPLICA_ERROR, Type::Error, "a replica failed"),
    (RESTORE_ERROR, Type::Error, "a restore failed"),
    (DB_ERROR, Type::Error, "a database failed"),
    (
        SERVICE_ERROR,
        Type::Error,
        "the service could not run or ended with an error",
    ),
    (ERROR_OTHER, Type::Error, "other error"),
    (REPLICA_WARNING, Type::Warning, "a replica warning"),
    (DB_WARNING, Type::Warning, "a database warning"),
    (WARNING_OTHER, Type::Warning, "other warning"),
];

/// The message compiler source (`windmc`) of the message table: every ID's text is its
/// first insertion string, the event's own message.
pub fn message_table_source() -> String {
    let mut s = String::from("LanguageNames=(English=0x409:MSG00409)\n\n");
    for (id, _, _) in EVENT_IDS {
        s.push_str(&format!(
            "MessageId={id}\nSeverity=Success\nLanguage=English\n%1\n.\n\n"
        ));
    }
    s
}
