//! Feeds arbitrary text to the config parser (`$VAR` expansion, YAML, merge keys, strict
//! key checking, durations, sizes, URLs, cross-checks) and replica URLs to the URL parser
//! and to the command-line URL resolution.
//! Any panic or hang is a bug; errors are expected, and each must render as a message.
#![no_main]

// The config module of the binary crate, compiled here as it is there (it depends on
// nothing else in that crate).
#[allow(dead_code, unused_imports)]
#[path = "../../crates/cli/src/config/mod.rs"]
mod config;

// The config reads one module of engine, `engine::defaults` (std only), compiled here from
// the same file. This crate stands in for engine so the fuzz build needs none of engine's
// I/O stack (tokio, object_store, russh, rusqlite).
extern crate self as engine;
#[allow(dead_code)]
#[path = "../../crates/engine/src/defaults.rs"]
mod defaults;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |k: &str| match k {
        "HOME" => Some("/home/fuzz".to_string()),
        "BUCKET" => Some("b".to_string()),
        _ => None,
    };
    for expand in [false, true] {
        if let Err(e) = config::parse(text, expand, &env) {
            let _ = e.to_string();
        }
    }
    if let Some(line) = text.lines().next() {
        if let Err(e) = config::parse_replica_url(line) {
            let _ = e.to_string();
        }
        // The first line as a command-line URL, resolved against the whole text's config.
        let cfg = config::parse(text, false, &env).ok();
        if let Err(e) = config::resolve_replica_url(cfg.as_ref(), line, &env) {
            let _ = e.to_string();
        }
    }
});
