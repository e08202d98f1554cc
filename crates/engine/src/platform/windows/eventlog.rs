//! The Windows Event Log: registering an event source (the registry key under
//! `HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\<source>`), writing
//! events to the Application log under it, and reading them back (for tests and
//! diagnostics).
//!
//! The source's `EventMessageFile` is our own executable, which carries a message table
//! whose every event ID we use has the text `%1` (built by the CLI's build script), so
//! Event Viewer shows our message, not "the description for Event ID ... cannot be
//! found".

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER, HANDLE};
use windows_sys::Win32::System::EventLog::{
    CloseEventLog, DeregisterEventSource, OpenEventLogW, ReadEventLogW, RegisterEventSourceW,
    ReportEventW, EVENTLOGRECORD, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE,
    EVENTLOG_SEQUENTIAL_READ, EVENTLOG_WARNING_TYPE,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegCreateKeyExW, RegDeleteTreeW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE,
    KEY_WRITE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
};

/// `ReadEventLogW`'s flag for newest first.
const EVENTLOG_BACKWARDS_READ: u32 = 8;

/// The registry key of the Application log's sources.
const SOURCES_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application";

/// An event's type in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Error,
    Warning,
    Information,
}

impl EventType {
    fn raw(self) -> u16 {
        match self {
            EventType::Error => EVENTLOG_ERROR_TYPE,
            EventType::Warning => EVENTLOG_WARNING_TYPE,
            EventType::Information => EVENTLOG_INFORMATION_TYPE,
        }
    }

    fn from_raw(t: u16) -> Option<EventType> {
        match t {
            EVENTLOG_ERROR_TYPE => Some(EventType::Error),
            EVENTLOG_WARNING_TYPE => Some(EventType::Warning),
            EVENTLOG_INFORMATION_TYPE => Some(EventType::Information),
            _ => None,
        }
    }
}

fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(std::iter::once(0)).collect()
}

fn check(rc: u32) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// Registers `source` in the Application log with `message_file` (a file with a
/// message table) as its `EventMessageFile`. Needs administrator rights. Idempotent.
pub fn register_source(source: &str, message_file: &Path) -> io::Result<()> {
    let key = wide(format!(r"{SOURCES_KEY}\{source}"));
    let mut hkey: HKEY = std::ptr::null_mut();
    // SAFETY: valid wide strings, out pointer to our HKEY; closed below.
    check(unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_WRITE,
            std::ptr::null(),
            &mut hkey,
            std::ptr::null_mut(),
        )
    })?;
    let file = wide(message_file.as_os_str());
    let types: u32 =
        (EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE) as u32;
    let name = wide("EventMessageFile");
    // SAFETY: an open key, a nul-terminated wide string and its size in bytes.
    let r = check(unsafe {
        RegSetValueExW(
            hkey,
            name.as_ptr(),
            0,
            REG_EXPAND_SZ,
            file.as_ptr().cast(),
            (file.len() * 2) as u32,
        )
    })
    .and_then(|()| {
        let name = wide("TypesSupported");
        // SAFETY: an open key and a u32 value.
        check(unsafe {
            RegSetValueExW(
                hkey,
                name.as_ptr(),
                0,
                REG_DWORD,
                (&types as *const u32).cast(),
                4,
            )
        })
    });
    // SAFETY: the key we opened.
    unsafe { RegCloseKey(hkey) };
    r
}

/// Removes `source`'s registry key. A source that is not registered is not an error.
pub fn deregister_source(source: &str) -> io::Result<()> {
    let key = wide(format!(r"{SOURCES_KEY}\{source}"));
    // SAFETY: a predefined root key and a valid wide string.
    match unsafe { RegDeleteTreeW(HKEY_LOCAL_MACHINE, key.as_ptr()) } {
        0 | ERROR_FILE_NOT_FOUND => Ok(()),
        e => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

/// A handle for writing events under one source.
pub struct EventLog(HANDLE);

// SAFETY: ReportEventW may be called from any thread with the same handle.
unsafe impl Send for EventLog {}
// SAFETY: as above; the handle is only read.
unsafe impl Sync for EventLog {}

impl EventLog {
    /// Opens the log for writing under `source` (writing works even when the source is
    /// not registered; Event Viewer then lacks the message file).
    pub fn open(source: &str) -> io::Result<EventLog> {
        let s = wide(source);
        // SAFETY: the local machine (null) and a valid wide string.
        let h = unsafe { RegisterEventSourceW(std::ptr::null(), s.as_ptr()) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(EventLog(h))
    }

    /// Writes one event: `kind`, `id` and `text` as its one insertion string.
    pub fn report(&self, kind: EventType, id: u32, text: &str) -> io::Result<()> {
        // The log limits one string to 31 839 characters.
        let text: String = text.chars().take(31_000).collect();
        let s = wide(text);
        let strings = [s.as_ptr()];
        // SAFETY: a valid handle; one nul-terminated string; no SID, no raw data.
        let ok = unsafe {
            ReportEventW(
                self.0,
                kind.raw(),
                0,
                id,
                std::ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                std::ptr::null(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { DeregisterEventSource(self.0) };
    }
}

/// One event read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub source: String,
    /// `None` for the types we never write (audit events).
    pub kind: Option<EventType>,
    pub id: u32,
    pub strings: Vec<String>,
}

/// The newest `max` events of the Application log (any source), newest first.
pub fn read_application_log(max: usize) -> io::Result<Vec<Event>> {
    let name = wide("Application");
    // SAFETY: the local machine and a valid wide string; closed below.
    let h = unsafe { OpenEventLogW(std::ptr::null(), name.as_ptr()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let r = loop {
        if out.len() >= max {
            break Ok(());
        }
        let (mut read, mut needed) = (0u32, 0u32);
        // SAFETY: a valid handle and a buffer of the size we pass.
        let ok = unsafe {
            ReadEventLogW(
                h,
                EVENTLOG_SEQUENTIAL_READ | EVENTLOG_BACKWARDS_READ,
                0,
                buf.as_mut_ptr().cast(),
                buf.len() as u32,
                &mut read,
                &mut needed,
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(ERROR_INSUFFICIENT_BUFFER as i32) {
                buf.resize(needed as usize, 0);
                continue;
            }
            // ERROR_HANDLE_EOF: read everything.
            break if e.raw_os_error() == Some(38) {
                Ok(())
            } else {
                Err(e)
            };
        }
        parse_records(&buf[..read as usize], &mut out);
    };
    // SAFETY: the handle we opened.
    unsafe { CloseEventLog(h) };
    r.map(|()| {
        out.truncate(max);
        out
    })
}

/// Parses the `EVENTLOGRECORD`s in `buf` (as `ReadEventLogW` fills it).
fn parse_records(buf: &[u8], out: &mut Vec<Event>) {
    let head = std::mem::size_of::<EVENTLOGRECORD>();
    let mut at = 0;
    while at + head <= buf.len() {
        // SAFETY: `head` bytes are in bounds; read_unaligned copes with any alignment.
        let rec: EVENTLOGRECORD = unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        let len = rec.Length as usize;
        if len < head || at + len > buf.len() {
            return;
        }
        let body = &buf[at..at + len];
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        // The source name follows the header, nul-terminated.
        let source = utf16_at(&units, head / 2);
        let mut strings = Vec::new();
        let mut s = rec.StringOffset as usize / 2;
        for _ in 0..rec.NumStrings {
            let t = utf16_at(&units, s);
            s += t.encode_utf16().count() + 1;
            strings.push(t);
        }
        out.push(Event {
            source,
            kind: EventType::from_raw(rec.EventType),
            id: rec.EventID & 0xffff,
            strings,
        });
        at += len;
    }
}

fn utf16_at(units: &[u16], from: usize) -> String {
    let rest = units.get(from..).unwrap_or(&[]);
    let end = rest.iter().position(|&u| u == 0).unwrap_or(rest.len());
    String::from_utf16_lossy(&rest[..end])
}
