//! Which secrets a config file's text holds inline, for `check`'s warning about a config
//! file others can read (security issue 17).
//!
//! Owns: the list of keys that hold secrets, and telling a value written in the file from
//! one that names a variable (`$VAR`, `${VAR}`), which keeps the secret out of the file.
//! Reads the raw text (no expansion); does not read the file or its permissions (the
//! caller does), and never returns a value, only key paths.

use serde_norway::Value;

use super::expand::expand_env;
use super::url::redact_url;
use super::yaml::child;

/// Keys whose value is a credential or an encryption key.
const SECRET_KEYS: &[&str] = &[
    "access-key-id",
    "secret-access-key",
    "account-key",
    "sas-token",
    "password",
    "key-passphrase",
    "sse-customer-key",
    "webdav-password",
    "token",
    "nkey",
    "seed",
    "jwt",
];

/// The key paths (`dbs[0].replica.secret-access-key`) of secrets written inline in
/// `text`: a secret key whose value names no variable, or a `url` with a password. A text
/// that is not YAML holds nothing we can point at (loading it reports the error).
pub fn inline_secrets(text: &str) -> Vec<String> {
    let Ok(mut root) = serde_norway::from_str::<Value>(text) else {
        return Vec::new();
    };
    let _ = root.apply_merge();
    let mut out = Vec::new();
    walk(&root, "", &mut out);
    out
}

fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, item) in m {
                let Value::String(k) = k else { continue };
                let at = child(path, k);
                let inline = match (k.as_str(), item) {
                    ("url", Value::String(u)) => !names_variable(u) && redact_url(u) != *u,
                    (k, Value::String(s)) if SECRET_KEYS.contains(&k) => {
                        !s.is_empty() && !names_variable(s)
                    }
                    (k, Value::Number(_)) => SECRET_KEYS.contains(&k),
                    // age secret keys, inline as Litestream 0.3 had them (`age.rs`).
                    ("identities", Value::String(s)) => !s.is_empty() && !names_variable(s),
                    ("identities", Value::Sequence(items)) => items.iter().any(
                        |i| matches!(i, Value::String(s) if !s.is_empty() && !names_variable(s)),
                    ),
                    _ => false,
                };
                if inline {
                    out.push(at);
                } else {
                    walk(item, &at, out);
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Tagged(t) => walk(&t.value, path, out),
        _ => {}
    }
}

/// Whether `s` takes part of its value from a variable (`$$` is a literal `$`).
fn names_variable(s: &str) -> bool {
    let with = expand_env(s, &|_| Some("\u{1}".to_string()));
    let without = expand_env(s, &|_| Some(String::new()));
    matches!((with, without), (Ok(a), Ok(b)) if a != b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inline_secrets_not_variables() {
        let text = "\
access-key-id: AKIA
secret-access-key: $AWS_SECRET
dbs:
  - path: /a.db
    replicas:
      - url: s3://b/p
        secret-access-key: hunter2
        sse-customer-key: ${SSE}
      - url: 'sftp://bob:pw@h/p'
      - url: 'sftp://bob:${PW}@h/p'
      - type: sftp
        host: h
        password: pa$$word
        key-passphrase: 1234
        key-path: /k
      - type: abs
        account-key: ''
        sas-token: $SAS
";
        assert_eq!(
            inline_secrets(text),
            [
                "access-key-id",
                "dbs[0].replicas[0].secret-access-key",
                "dbs[0].replicas[1].url",
                "dbs[0].replicas[3].password",
                "dbs[0].replicas[3].key-passphrase",
            ]
        );
        let age = "\
dbs:
  - path: /a.db
    replicas:
      - url: file:///r
        age:
          identities: [AGE-SECRET-KEY-1X]
          recipients: [age1x]
      - url: file:///s
        age:
          identities: [$AGE_ID]
          identity-file: /k.txt
";
        assert_eq!(inline_secrets(age), ["dbs[0].replicas[0].age.identities"]);
        assert!(inline_secrets("dbs: [").is_empty());
        assert!(
            inline_secrets("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n").is_empty()
        );
    }
}
