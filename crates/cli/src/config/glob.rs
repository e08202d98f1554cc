//! The `pattern` of a directory config, matched against file names (not paths) the way
//! Go's `filepath.Match` does, which is what Litestream uses:
//! `*` any run of characters, `?` one character, `[abc]`, `[a-z]`, `[^a-z]` (also
//! `[!a-z]`) a class, `\x` the character `x`. A `/` is never matched by a wildcard.
//!
//! [`validate_pattern`] runs at config load so a malformed pattern is reported there
//! instead of silently matching nothing.

#[derive(Debug, PartialEq)]
enum Token {
    Char(char),
    Star,
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why `pattern` is malformed, if it is.
pub(crate) fn validate_pattern(pattern: &str) -> Result<(), String> {
    tokenize(pattern).map(|_| ())
}

/// Whether `name` matches `pattern`. A malformed pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let Ok(tokens) = tokenize(pattern) else {
        return false;
    };
    let name: Vec<char> = name.chars().collect();
    matches(&tokens, &name)
}

fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => tokens.push(Token::Char(chars.next().ok_or("it ends with a lone `\\`")?)),
            '[' => {
                let negated = matches!(chars.peek(), Some('^' | '!'));
                if negated {
                    chars.next();
                }
                let mut ranges = Vec::new();
                loop {
                    let lo = match chars.next() {
                        None => return Err("a `[` has no closing `]`".into()),
                        Some(']') if !ranges.is_empty() => break,
                        Some(']' | '-') => {
                            return Err("a `[...]` class starts with `]` or `-` or is empty".into())
                        }
                        Some('\\') => chars.next().ok_or("it ends with a lone `\\`")?,
                        Some(c) => c,
                    };
                    let mut hi = lo;
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        hi = match chars.next() {
                            None => return Err("a `[` has no closing `]`".into()),
                            Some(']' | '-') => {
                                return Err("a range in `[...]` has no upper end".into())
                            }
                            Some('\\') => chars.next().ok_or("it ends with a lone `\\`")?,
                            Some(c) => c,
                        };
                        if hi < lo {
                            return Err(format!("the range `{lo}-{hi}` is backwards"));
                        }
                    }
                    ranges.push((lo, hi));
                }
                tokens.push(Token::Class { negated, ranges });
            }
            c => tokens.push(Token::Char(c)),
        }
    }
    Ok(tokens)
}

/// Backtracking match; patterns are short and names are file names, so the classic
/// "remember the last star" loop is enough.
fn matches(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let ok = match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(Token::Char(c)) => *c == name[n],
            Some(Token::One) => name[n] != '/',
            Some(Token::Class { negated, ranges }) => {
                name[n] != '/'
                    && ranges
                        .iter()
                        .any(|&(lo, hi)| lo <= name[n] && name[n] <= hi)
                        != *negated
            }
            None => false,
        };
        if ok {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star.filter(|&(_, sn)| name[sn] != '/') {
            // Let the last star swallow one more character and retry.
            star = Some((st, sn + 1));
            t = st + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_go_filepath_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.db", "app.db", true),
            ("*.db", "app.db-wal", false),
            ("*.db", ".db", true),
            ("*.db", "app.sqlite", false),
            ("*", "anything", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a*b", "a/b", false),
            ("?.db", "a.db", true),
            ("?.db", "ab.db", false),
            ("[abc].db", "b.db", true),
            ("[abc].db", "d.db", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("[!a-c]x", "dx", true),
            ("tenant-[0-9]*.sqlite", "tenant-42.sqlite", true),
            ("tenant-[0-9]*.sqlite", "tenant-x.sqlite", false),
            ("\\*.db", "*.db", true),
            ("\\*.db", "a.db", false),
            ("[\\]]", "]", true),
            ("*.db", "ünï.db", true),
            ("?", "ü", true),
            ("*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), *want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn malformed_patterns_are_reported_and_match_nothing() {
        let cases: &[(&str, &str)] = &[
            ("[a", "a `[` has no closing `]`"),
            ("[]", "a `[...]` class starts with `]` or `-` or is empty"),
            ("[-a]", "a `[...]` class starts with `]` or `-` or is empty"),
            ("[a-]", "a range in `[...]` has no upper end"),
            ("[z-a]", "the range `z-a` is backwards"),
            ("x\\", "it ends with a lone `\\`"),
        ];
        for (pattern, want) in cases {
            assert_eq!(validate_pattern(pattern).unwrap_err(), *want, "{pattern}");
            assert!(!glob_match(pattern, "a"));
        }
        assert!(validate_pattern("*.db").is_ok());
    }
}
