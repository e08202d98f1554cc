//! Environment expansion of the config's string values, with the syntax of Litestream's
//! Go `os.Expand` (disabled by `-no-expand-env`).
//!
//! **Ours: expansion runs after YAML parsing, inside each string value** (never keys),
//! where Litestream expands the raw text first. A variable's value is therefore always
//! one literal value: a newline cannot add keys (`FOO=$'x\nbucket: evil'`), ` #` cannot
//! cut the rest of the line off as a comment, and quotes need no escaping (security issue
//! 17). Typed settings still come from variables (`sync-interval: ${SI}`,
//! `skip-verify: $SV`): every key is read from its string form anyway (see `yaml.rs`).
//! A value that expands to nothing is absent, as an empty `key:` line was before.
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
//! Comments are not expanded (Litestream's are, to no effect).

use serde_norway::Value;

use super::error::{ConfigError, ErrorKind};
use super::yaml::child;

/// Expands the variables of every string value in `v` (at key path `path`), in place.
/// Errors name the key path of the value.
pub(crate) fn expand_values(
    v: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match v {
        Value::String(s) if s.contains('$') => {
            let expanded = expand_env(s, env).map_err(|e| e.at(path))?;
            *v = if expanded.is_empty() {
                Value::Null
            } else {
                Value::String(expanded)
            };
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_values(item, &format!("{path}[{i}]"), env)?;
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = match k {
                    Value::String(k) => child(path, k),
                    _ => path.to_string(),
                };
                expand_values(item, &key, env)?;
            }
        }
        Value::Tagged(t) => expand_values(&mut t.value, path, env)?,
        _ => {}
    }
    Ok(())
}

/// `text` with variables replaced, looked up through `env`.
pub(crate) fn expand_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
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
                Some(1) => return Err(expand_error("empty `${}`")),
                Some(end) => (&after[1..end], end + 1),
                None => return Err(expand_error("`${` without a closing `}`")),
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

/// The error's key path is added by [`expand_values`]; the value is never shown (it may
/// be a secret).
fn expand_error(what: &str) -> ConfigError {
    ConfigError::new(
        "",
        ErrorKind::Expand(format!("{what} (write `$$` for a literal `$`)")),
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
    fn bad_braces_are_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "1 ${X",
                "environment expansion: `${` without a closing `}` (write `$$` for a literal `$`)",
            ),
            (
                "${}",
                "environment expansion: empty `${}` (write `$$` for a literal `$`)",
            ),
            // Found by fuzz/config_parse (an offset that could split a character).
            (
                "$X $Y ${",
                "environment expansion: `${` without a closing `}` (write `$$` for a literal `$`)",
            ),
            (
                "&\u{52a}$[\r$\u{1}\u{4}${",
                "environment expansion: `${` without a closing `}` (write `$$` for a literal `$`)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(expand_env(text, &env).unwrap_err().to_string(), *want);
        }
    }

    #[test]
    fn values_expand_inside_their_scalar_and_errors_name_the_key() {
        let mut v: Value =
            serde_norway::from_str("a:\n  - b: x$BUCKET\n    c: $UNSET\n    d: 5\n  - '${'\n")
                .unwrap();
        let e = expand_values(&mut v, "", &env).unwrap_err().to_string();
        assert!(e.starts_with("a[1]: environment expansion"), "{e}");
        let mut v: Value = serde_norway::from_str("a:\n  - b: x$BUCKET\n    c: $UNSET\n").unwrap();
        expand_values(&mut v, "", &env).unwrap();
        let want: Value = serde_norway::from_str("a:\n  - b: xmy-bucket\n    c: null\n").unwrap();
        assert_eq!(v, want);
    }
}
