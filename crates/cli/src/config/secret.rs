//! A credential read from the config or the environment.
//!
//! Owns: the one string type that never prints its value (`Debug` and `Display` show
//! `***`), so a config value logged, put in an error or in status by mistake leaks
//! nothing. Depends on nothing else in `config`.

use std::fmt;

/// A credential. `Debug` and `Display` print `***`; [`Secret::expose`] gives the value
/// to the one place that needs it (the backend client).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
