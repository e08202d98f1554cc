//! Logging to the Windows Event Log: a tracing layer that writes each event at info and
//! above to the Application log under the service's event source, with the event type of
//! its level and a stable event ID per kind of event ([`EVENT_IDS`]), so an operator can
//! filter errors in Event Viewer (Litestream logs everything as information, ID 1).
//!
//! Owns: the event ID table (also compiled into the executable's message table by
//! `build.rs`, so Event Viewer shows our text) and the mapping of an event to a type and
//! an ID. The writing itself is `engine::platform::eventlog`. Used when running as a
//! service (`commands::service`); `logging:` (stderr, stdout, files) applies as before.

#![cfg_attr(not(windows), allow(dead_code))]

pub mod ids;

pub use ids::*;

/// What the layer knows of an event when it picks its ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    pub message: &'a str,
    pub target: &'a str,
    /// An explicit `event_id` field.
    pub event_id: Option<u32>,
    pub has_replica: bool,
    pub has_db: bool,
}

/// The type and ID of an event at `level`; `None` below info (not logged there).
pub fn classify(level: tracing::Level, f: &Facts<'_>) -> Option<(Type, u32)> {
    let ty = match level {
        tracing::Level::ERROR => Type::Error,
        tracing::Level::WARN => Type::Warning,
        tracing::Level::INFO => Type::Information,
        _ => return None,
    };
    if let Some(id) = f.event_id {
        return Some((ty, id));
    }
    let restore = f.target.contains("restore");
    let id = match ty {
        Type::Error if f.has_replica => REPLICA_ERROR,
        Type::Error if restore => RESTORE_ERROR,
        Type::Error if f.has_db => DB_ERROR,
        Type::Error => ERROR_OTHER,
        Type::Warning if f.has_replica => REPLICA_WARNING,
        Type::Warning if f.has_db => DB_WARNING,
        Type::Warning => WARNING_OTHER,
        Type::Information if f.message == "replicating" => DB_REPLICATING,
        Type::Information if f.message.starts_with("shutting down: final sync") => FINAL_SYNC,
        Type::Information => INFO_OTHER,
    };
    Some((ty, id))
}

#[cfg(windows)]
pub use layer::EventLogLayer;

#[cfg(windows)]
mod layer {
    use std::fmt::Write as _;

    use engine::platform::eventlog::{EventLog, EventType};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::Layer;

    use super::{classify, Facts, Type};

    /// Writes events to the Application log under one source.
    pub struct EventLogLayer {
        log: EventLog,
    }

    impl EventLogLayer {
        pub fn new(source: &str) -> std::io::Result<EventLogLayer> {
            Ok(EventLogLayer {
                log: EventLog::open(source)?,
            })
        }
    }

    #[derive(Default)]
    struct Collect {
        message: String,
        fields: String,
        event_id: Option<u32>,
        has_replica: bool,
        has_db: bool,
    }

    impl Visit for Collect {
        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "event_id" {
                self.event_id = u32::try_from(value).ok();
            } else {
                self.record_debug(field, &value);
            }
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            if field.name() == "event_id" {
                self.event_id = u32::try_from(value).ok();
            } else {
                self.record_debug(field, &value);
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.record_debug(field, &format_args!("{value}"));
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "message" => {
                    let _ = write!(self.message, "{value:?}");
                }
                name => {
                    self.has_replica |= name == "replica";
                    self.has_db |= name == "db";
                    let _ = write!(self.fields, " {name}={value:?}");
                }
            }
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for EventLogLayer {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            let mut c = Collect::default();
            event.record(&mut c);
            let facts = Facts {
                message: &c.message,
                target: event.metadata().target(),
                event_id: c.event_id,
                has_replica: c.has_replica,
                has_db: c.has_db,
            };
            let Some((ty, id)) = classify(*event.metadata().level(), &facts) else {
                return;
            };
            let kind = match ty {
                Type::Error => EventType::Error,
                Type::Warning => EventType::Warning,
                Type::Information => EventType::Information,
            };
            // Best effort: a full or unavailable log must not stop replication.
            let _ = self
                .log
                .report(kind, id, &format!("{}{}", c.message, c.fields));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn events_get_their_type_and_id() {
        let f = |message, target, has_replica, has_db| Facts {
            message,
            target,
            event_id: None,
            has_replica,
            has_db,
        };
        assert_eq!(
            classify(
                Level::ERROR,
                &f("upload failed", "engine::replicate", true, true)
            ),
            Some((Type::Error, REPLICA_ERROR))
        );
        assert_eq!(
            classify(Level::ERROR, &f("x", "engine::restore::run", false, false)),
            Some((Type::Error, RESTORE_ERROR))
        );
        assert_eq!(
            classify(
                Level::ERROR,
                &f("capture failed", "engine::replicate", false, true)
            ),
            Some((Type::Error, DB_ERROR))
        );
        assert_eq!(
            classify(Level::WARN, &f("retrying", "engine", true, false)),
            Some((Type::Warning, REPLICA_WARNING))
        );
        assert_eq!(
            classify(
                Level::INFO,
                &f("replicating", "sqlite_replicate", false, true)
            ),
            Some((Type::Information, DB_REPLICATING))
        );
        assert_eq!(
            classify(Level::DEBUG, &f("x", "engine", false, false)),
            None
        );
        let explicit = Facts {
            event_id: Some(SERVICE_STARTED),
            ..f("service started", "sqlite_replicate", false, false)
        };
        assert_eq!(
            classify(Level::INFO, &explicit),
            Some((Type::Information, SERVICE_STARTED))
        );
        // IDs are unique, and every type has its own range.
        let mut ids: Vec<u32> = EVENT_IDS.iter().map(|e| e.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), EVENT_IDS.len());
        for (id, ty, _) in EVENT_IDS {
            let range = match ty {
                Type::Information => 1000..2000,
                Type::Error => 2000..3000,
                Type::Warning => 3000..4000,
            };
            assert!(range.contains(id), "{id}");
        }
        assert!(message_table_source().contains("MessageId=2000\n"));
    }
}
