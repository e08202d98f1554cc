//! The edge shared by the backends built on `object_store` (S3, ABS): one failure becomes
//! one [`StorageError`] kind.
//!
//! Owns: the classification itself ([`classify`]: no response at all → transient or TLS;
//! `object_store`'s own kinds; then the service's error code and HTTP status), scrubbing
//! secrets and newlines from details, finding the transport error in a failure's sources,
//! joining a source chain into one line, and reading the HTTP status and an XML error tag
//! out of the client's message. Does not know any service: each backend's `error` module
//! supplies a [`Dialect`] (its codes, hints, and how to read its error replies).

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};

use super::StorageError;

/// What one service's error replies look like and mean, for [`classify`].
#[derive(Debug)]
pub(crate) struct Dialect {
    /// What a missing container is called in messages: `bucket`, `container`.
    pub container_noun: &'static str,
    /// What a stored file is called in messages: `object`, `blob`.
    pub object_noun: &'static str,
    /// The error code of a missing bucket or container.
    pub missing_container_code: &'static str,
    /// Error codes that mean the credentials or their permissions are wrong.
    pub auth_codes: &'static [&'static str],
    /// Error codes worth retrying.
    pub transient_codes: &'static [&'static str],
    /// Appended to every `PermissionDenied` detail.
    pub credentials_hint: &'static str,
    /// Lower-case words in a transport error that mean TLS failed.
    pub tls_words: &'static [&'static str],
    /// Put in parentheses after a TLS failure.
    pub tls_hint: &'static str,
    /// Whether HTTP 507 means `NoSpace` (else it is a 5xx like any other: transient).
    pub no_space_on_507: bool,
    /// Reads the status, code and description out of the client's error text.
    pub read_reply: fn(&str) -> Reply,
}

/// The parts of a service's error reply a message needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: Option<u16>,
    /// Empty when the reply has none.
    pub code: String,
    /// For the operator, unscrubbed; empty when there is nothing to say.
    pub description: String,
}

impl Reply {
    /// A reply in the `<Error><Code>..</Code><Message>..</Message></Error>` XML most
    /// services use, with the HTTP status `object_store` puts in its text. Only the
    /// message's first line is kept (Azure adds a request id and time after a newline).
    pub(crate) fn from_xml(text: &str) -> Reply {
        let status = status_in(text);
        let code = xml_tag(text, "Code").unwrap_or_default();
        let message =
            xml_tag(text, "Message").map(|m| m.lines().next().unwrap_or_default().to_string());
        let mut d = match (code.as_str(), message) {
            ("", None) => String::new(),
            (c, None) => c.to_string(),
            ("", Some(m)) => m,
            (c, Some(m)) => format!("{c}: {m}"),
        };
        if let Some(st) = status {
            d = if d.is_empty() {
                format!("HTTP {st}")
            } else {
                format!("HTTP {st} {d}")
            };
        }
        Reply {
            status,
            code,
            description: d,
        }
    }
}

/// The edge: one `object_store` failure → one [`StorageError`] kind. `container` is the
/// bucket or container name; `secrets` are scrubbed from every detail.
pub(crate) fn classify(
    d: &Dialect,
    location: &str,
    container: &str,
    what: String,
    e: &object_store::Error,
    secrets: &[String],
) -> StorageError {
    use object_store::Error as E;
    let location = location.to_string();
    let text = e.to_string();
    let clean = |s: &str| scrub(s, secrets);

    // No response at all: connection refused, DNS, timeouts, resets, TLS.
    if let Some(h) = find_http_error(e) {
        let detail = clean(&chain_text(h));
        let lower = detail.to_ascii_lowercase();
        if d.tls_words.iter().any(|w| lower.contains(w)) {
            return StorageError::permanent(
                location,
                what,
                format!("TLS failure: {detail} ({})", d.tls_hint),
            );
        }
        let detail = match h.kind() {
            HttpErrorKind::Connect => format!("cannot connect to the endpoint: {detail}"),
            HttpErrorKind::Timeout => format!("no answer in time: {detail}"),
            _ => detail,
        };
        return match h.kind() {
            HttpErrorKind::Connect
            | HttpErrorKind::Request
            | HttpErrorKind::Timeout
            | HttpErrorKind::Interrupted
            | HttpErrorKind::Decode => StorageError::transient(location, what, detail),
            _ => StorageError::permanent(location, what, detail),
        };
    }

    let reply = (d.read_reply)(&text);
    let code = reply.code.as_str();
    let detail = if reply.description.is_empty() {
        clean(&text)
    } else {
        clean(&reply.description)
    };
    if !code.is_empty() && code == d.missing_container_code {
        return StorageError::not_found(location, format!("{} {container:?}", d.container_noun));
    }
    let denied = |detail: String| {
        StorageError::permission_denied(
            location.clone(),
            what.clone(),
            format!("{detail}; {}", d.credentials_hint),
        )
    };
    match e {
        E::NotFound { .. } => return StorageError::not_found(location, what),
        E::Precondition { .. } | E::AlreadyExists { .. } => {
            return StorageError::precondition(location, what)
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => return denied(detail),
        E::NotSupported { .. } | E::NotImplemented { .. } => {
            return StorageError::permanent(location, what, clean(&text));
        }
        _ => {}
    }
    if d.auth_codes.contains(&code) || matches!(reply.status, Some(401 | 403)) {
        return denied(detail);
    }
    let no_space = d.no_space_on_507 && reply.status == Some(507);
    if d.transient_codes.contains(&code)
        || matches!(reply.status, Some(408 | 429 | 500..=599)) && !no_space
    {
        return StorageError::transient(location, what, detail);
    }
    match reply.status {
        _ if no_space => StorageError::no_space(location, what),
        Some(404) => StorageError::not_found(location, what),
        Some(409 | 412) => StorageError::precondition(location, what),
        _ => StorageError::permanent(location, what, detail),
    }
}

/// Removes secrets and newlines from text bound for an error message.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut s = text.replace(['\n', '\r'], " ");
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        s = s.replace(secret.as_str(), "***");
    }
    s
}

/// The transport failure behind an error, when the request got no response at all.
pub(crate) fn find_http_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a HttpError> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<HttpError>() {
            return Some(h);
        }
        cur = c.source();
    }
    None
}

/// An error and its sources, each once, joined by `: `.
pub(crate) fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// The HTTP status in the client's message ("... status code: 403 Forbidden: ...").
///
/// Why text: for most requests `object_store` keeps the status and response body only in
/// a crate-private error type that ends up in its message.
pub(crate) fn status_in(text: &str) -> Option<u16> {
    let i = text.find("status code: ")?;
    text.get(i + 13..i + 16)?.parse::<u16>().ok()
}

/// The trimmed, non-empty text of the first `<tag>...</tag>` in `text`.
pub(crate) fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    let v = text[start..end].trim();
    (!v.is_empty()).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replies_and_scrubs() {
        let text = "Server returned non-2xx status code: 403 Forbidden: <Error><Code>AuthenticationFailed</Code>\
                    <Message> bad </Message></Error>";
        assert_eq!(status_in(text), Some(403));
        assert_eq!(
            xml_tag(text, "Code").as_deref(),
            Some("AuthenticationFailed")
        );
        assert_eq!(xml_tag(text, "Message").as_deref(), Some("bad"));
        assert_eq!(xml_tag("<Code> </Code>", "Code"), None);
        assert_eq!(status_in("status code: 4"), None);
        assert_eq!(
            scrub("key s3cr3t\nnext", &["s3cr3t".into(), "ab".into()]),
            "key *** next"
        );
    }
}
