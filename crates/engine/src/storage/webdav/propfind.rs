//! PROPFIND: reading the `207 Multi-Status` answer (RFC 4918 §9.1) into [`Entry`]s.
//!
//! Owns: matching elements by local name in the `DAV:` namespace whatever prefix the
//! server picks (`D:`, `ns0:`, none), taking each `response`'s properties only from its
//! `propstat` blocks whose status is 200, and the last segment of each `href`,
//! percent-decoded. Dates are RFC 1123 (`getlastmodified`).

use std::time::SystemTime;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// One `response` of a multistatus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// The href as sent (an absolute path or URL, percent-encoded).
    pub href: String,
    /// The href's last non-empty segment, percent-decoded.
    pub name: String,
    pub is_collection: bool,
    pub size: Option<u64>,
    pub modified: Option<SystemTime>,
}

#[derive(Default)]
struct Pending {
    href: String,
    is_collection: bool,
    size: Option<u64>,
    modified: Option<SystemTime>,
}

/// The responses of a multistatus body; an error says what is malformed.
pub(super) fn parse(xml: &str) -> Result<Vec<Entry>, String> {
    let mut r = NsReader::from_str(xml);
    r.config_mut().trim_text(true);
    let mut out = Vec::new();
    // The response being read; the properties of the propstat being read (applied at its
    // end if its status is 200); the DAV: element whose text comes next.
    let mut cur: Option<Pending> = None;
    let mut props = Pending::default();
    let mut status_ok = true;
    let mut text_of: Option<Vec<u8>> = None;
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|e| format!("not XML: {e}"))?;
        let dav = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == b"DAV:");
        match ev {
            Event::Start(e) | Event::Empty(e) if dav => {
                let local = e.local_name().as_ref().to_vec();
                match local.as_slice() {
                    b"response" => cur = Some(Pending::default()),
                    b"propstat" => {
                        props = Pending::default();
                        status_ok = true;
                    }
                    b"collection" => props.is_collection = true,
                    _ => {}
                }
                text_of = Some(local);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| format!("bad text: {e}"))?;
                let text = text.trim();
                match text_of.as_deref() {
                    Some(b"href") => {
                        if let Some(c) = cur.as_mut() {
                            c.href.push_str(text);
                        }
                    }
                    Some(b"getcontentlength") => props.size = text.parse().ok(),
                    Some(b"getlastmodified") => props.modified = http_date(text),
                    Some(b"status") => status_ok = status_is_ok(text),
                    _ => {}
                }
            }
            Event::GeneralRef(g) if text_of.as_deref() == Some(b"href") => {
                // `&amp;` and kin inside an href.
                let name = g.decode().map_err(|e| format!("bad entity: {e}"))?;
                let ch = match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => return Err(format!("unknown entity &{other};")),
                };
                if let Some(c) = cur.as_mut() {
                    c.href.push_str(ch);
                }
            }
            Event::End(e) if dav => {
                match e.local_name().as_ref() {
                    b"propstat" => {
                        if let (true, Some(c)) = (status_ok, cur.as_mut()) {
                            c.is_collection |= props.is_collection;
                            c.size = c.size.or(props.size);
                            c.modified = c.modified.or(props.modified);
                        }
                    }
                    b"response" => {
                        if let Some(c) = cur.take() {
                            let name = last_segment(&c.href);
                            out.push(Entry {
                                name,
                                href: c.href,
                                is_collection: c.is_collection,
                                size: c.size,
                                modified: c.modified,
                            });
                        }
                    }
                    _ => {}
                }
                text_of = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// `HTTP/1.1 200 OK` → true.
fn status_is_ok(s: &str) -> bool {
    s.split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
}

/// An HTTP date (`Mon, 07 Dec 2026 10:06:17 GMT`), as `getlastmodified` and
/// `Last-Modified` carry it.
pub(super) fn http_date(s: &str) -> Option<SystemTime> {
    let ts = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(s.trim())
        .ok()?;
    Some(SystemTime::from(ts))
}

/// The last non-empty `/` segment of an href, percent-decoded (lossy for non-UTF-8).
fn last_segment(href: &str) -> String {
    let seg = href
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    percent_decode(seg)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// As WsgiDAV 4.4 answers (prefix `ns0`, one propstat).
    const WSGIDAV: &str = r#"<?xml version="1.0" encoding="utf-8" ?>
<ns0:multistatus xmlns:ns0="DAV:"><ns0:response><ns0:href>/a/b/</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype><ns0:collection /></ns0:resourcetype><ns0:getlastmodified>Mon, 07 Dec 2026 10:06:17 GMT</ns0:getlastmodified></ns0:prop><ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response><ns0:response><ns0:href>/a/b/d.txt</ns0:href><ns0:propstat><ns0:prop><ns0:resourcetype /><ns0:getcontentlength>3</ns0:getcontentlength><ns0:getlastmodified>Mon, 07 Dec 2026 10:06:17 GMT</ns0:getlastmodified></ns0:prop><ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response></ns0:multistatus>"#;

    /// As Apache mod_dav answers: prefix `D`, absolute URLs, a 404 propstat, encoded names.
    const APACHE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:">
<D:href>http://h/dav/my%20db/ltx/0/0000000000000001-0000000000000001.ltx</D:href>
<D:propstat><D:prop><lp1:resourcetype/><lp1:getcontentlength>475</lp1:getcontentlength>
<lp1:getlastmodified>Sun, 06 Dec 2026 22:01:02 GMT</lp1:getlastmodified></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getcontentlength>9</D:getcontentlength></D:prop>
<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response>
<D:response><D:href>/dav/x?a&amp;b/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;

    #[test]
    fn reads_wsgidav_and_apache_answers() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_637_977);
        let e = parse(WSGIDAV).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].name.as_str(), e[0].is_collection), ("b", true));
        assert_eq!(
            (
                e[1].name.as_str(),
                e[1].is_collection,
                e[1].size,
                e[1].modified
            ),
            ("d.txt", false, Some(3), Some(t))
        );
        let e = parse(APACHE).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "0000000000000001-0000000000000001.ltx");
        assert_eq!(e[0].size, Some(475), "the 404 propstat is ignored");
        assert!(!e[0].is_collection);
        assert!(e[1].is_collection && e[1].href == "/dav/x?a&b/");
    }

    #[test]
    fn names_are_decoded_and_bad_xml_is_an_error() {
        assert_eq!(last_segment("/a/my%20db/"), "my db");
        assert_eq!(last_segment("/a/b%2"), "b%2");
        assert_eq!(last_segment("/"), "");
        assert!(parse("<a><b></a>").is_err());
        assert_eq!(http_date("garbage"), None);
    }
}
