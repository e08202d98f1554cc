//! On Windows targets: compiles the Event Log message table (every event ID of
//! `src/eventlog/ids.rs` with the text `%1`, the event's own message) into the
//! executable, which `service install` registers as its source's `EventMessageFile`, so
//! Event Viewer shows our messages instead of "the description cannot be found". Uses
//! mingw's `windmc` and `windres` (`$WINDMC`, `$WINDRES` override them); without them the
//! executable still builds and logs, with a warning here.

use std::path::PathBuf;
use std::process::Command;

#[path = "src/eventlog/ids.rs"]
mod ids;

fn main() {
    println!("cargo:rerun-if-changed=src/eventlog/ids.rs");
    println!("cargo:rerun-if-env-changed=WINDMC");
    println!("cargo:rerun-if-env-changed=WINDRES");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mc = out.join("messages.mc");
    std::fs::write(&mc, ids::message_table_source()).expect("writing messages.mc");
    let windmc = std::env::var("WINDMC").unwrap_or_else(|_| "x86_64-w64-mingw32-windmc".into());
    let windres = std::env::var("WINDRES").unwrap_or_else(|_| "x86_64-w64-mingw32-windres".into());
    let ok = Command::new(&windmc)
        .arg("-h")
        .arg(&out)
        .arg("-r")
        .arg(&out)
        .arg(&mc)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("cargo:warning={windmc} failed or is missing: no Event Log message table");
        return;
    }
    let obj = out.join("messages.o");
    let ok = Command::new(&windres)
        .arg("--include-dir")
        .arg(&out)
        .arg("-i")
        .arg(out.join("messages.rc"))
        .arg("-o")
        .arg(&obj)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("cargo:warning={windres} failed or is missing: no Event Log message table");
        return;
    }
    println!("cargo:rustc-link-arg-bins={}", obj.display());
}
