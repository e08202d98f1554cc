//! Environment expansion of the config text before YAML parsing, as Litestream does with
//! Go's `os.Expand` (disabled by `-no-expand-env`).
//!
//! Rules, Go's unless marked:
//! - `$NAME` (letters, digits, `_`) and `${NAME}` (anything up to `}`) are replaced by the
//!   variable's value; an unset variable becomes the empty string.
//! - `$` followed by one special character (`*#@!?-` or a digit) is the variable of that
//!   name, normally unset, so it vanishes (`$1` → ``).
//! - `$PID` is this process's id when `PID` is not set (Litestream's special case).
//! - `$` at the end of the text, or before any other character (`$ `, `$/`), stays.
//! - **Ours:** `$$` is a literal `$`. Go expands it to the value of a variable named `$`
//!   (always empty), which only ever destroyed passwords; this gives them a way out.
//! - **Ours:** `${` without `}` and the empty `${}` are errors, where Go silently drops
//!   the characters.
//!
//! Expansion runs over the whole text, comments included, like Litestream's.

use super::error::{ConfigError, ErrorKind};

/// `text` with variables replaced, looked up through `env`.
pub(crate) fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        // Where this `$` is in `text` (errors name its line; `i` is within `rest`).
        let at = text.len() - rest.len() + i;
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = match after.chars().next() {
            None => {
                out.push('$');
                rest = after;
                continue;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
                continue;
            }
            Some('{') => match after.find('}') {
                Some(1) => return Err(expand_error(text, at, "empty `${}`")),
                Some(end) => (&after[1..end], end + 1),
                None => return Err(expand_error(text, at, "`${` without a closing `}`")),
            },
            Some(c) if "*#@!?-0123456789".contains(c) => (&after[..1], 1),
            Some(_) => {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..len], len)
            }
        };
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&lookup(name, env));
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(name: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    match env(name) {
        Some(v) => v,
        None if name == "PID" => std::process::id().to_string(),
        None => String::new(),
    }
}

fn expand_error(text: &str, byte: usize, what: &str) -> ConfigError {
    let line = text[..byte].matches('\n').count() + 1;
    ConfigError::new(
        "",
        ErrorKind::Expand(format!(
            "{what} on line {line} (write `$$` for a literal `$`)"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "BUCKET" => Some("my-bucket".into()),
            "B_2" => Some("two".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_like_go_os_expand() {
        let cases: &[(&str, &str)] = &[
            ("url: s3://$BUCKET/db", "url: s3://my-bucket/db"),
            ("url: s3://${BUCKET}/db", "url: s3://my-bucket/db"),
            ("${BUCKET}x $B_2.", "my-bucketx two."),
            ("$BUCKETx", ""),
            ("a: $UNSET|${UNSET}|$EMPTY", "a: ||"),
            ("cost: 5$", "cost: 5$"),
            ("a $ b $/c", "a $ b $/c"),
            ("pa$$word", "pa$word"),
            ("$$BUCKET", "$BUCKET"),
            ("$1x", "x"),
            ("${BUCKET:-default}", ""),
            ("no dollars", "no dollars"),
            ("ünïcode $BUCKET ü", "ünïcode my-bucket ü"),
        ];
        for (text, want) in cases {
            assert_eq!(expand_env(text, &env).unwrap(), *want, "{text}");
        }
    }

    #[test]
    fn pid_defaults_to_this_process() {
        assert_eq!(
            expand_env("$PID", &env).unwrap(),
            std::process::id().to_string()
        );
        assert_eq!(expand_env("$PID", &|_| Some("7".into())).unwrap(), "7");
    }

    #[test]
    fn bad_braces_are_errors_with_the_line() {
        let cases: &[(&str, &str)] = &[
            ("a: 1\nb: ${X", "environment expansion: `${` without a closing `}` on line 2 (write `$$` for a literal `$`)"),
            ("a: ${}", "environment expansion: empty `${}` on line 1 (write `$$` for a literal `$`)"),
            // The error's offset is in the whole text, after earlier expansions (found by
            // fuzz/config_parse: it was taken within the rest and could split a character).
            ("a: $X\nb: $Y\nc: ${", "environment expansion: `${` without a closing `}` on line 3 (write `$$` for a literal `$`)"),
            ("&\u{52a}$[\r$\u{1}\u{4}${", "environment expansion: `${` without a closing `}` on line 1 (write `$$` for a literal `$`)"),
        ];
        for (text, want) in cases {
            assert_eq!(expand_env(text, &env).unwrap_err().to_string(), *want);
        }
    }
}
