//! Helpers shared by the backends built on `object_store` (S3, ABS) for turning its
//! failures into [`super::StorageError`] text.
//!
//! Owns: scrubbing secrets and newlines from details, finding the transport error (no
//! response at all) in a failure's sources, joining a source chain into one line, and
//! reading the HTTP status and an XML error tag out of the client's message. Does not
//! classify: each backend's `error` module knows its own service's codes and hints.

use std::error::Error as StdError;

use object_store::client::HttpError;

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
