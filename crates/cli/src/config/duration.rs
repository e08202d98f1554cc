//! Durations in Go's `time.ParseDuration` syntax, which Litestream configs use:
//! `500ms`, `30s`, `1m30s`, `1.5h`, `24h`, `0`; units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`,
//! `h`. Also the reverse, [`format_duration`], spelled like Go's `Duration.String`.
//!
//! Deliberate differences from Go: negative durations are rejected (no config value can
//! use one), and the bound is Go's (about 292 years) so a file Go accepts we accept.
//! Bare YAML integers are handled by the caller (`yaml.rs`), not here.

use std::time::Duration;

use super::error::{ConfigError, ErrorKind};

/// Go's limit: `time.Duration` is an `int64` of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// What a duration error says is expected.
pub(crate) const EXPECTED: &str = "a duration (e.g. 1m30s)";

/// Parses a Go duration string.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    parse_nanos(s)
        .map(|n| Duration::from_nanos(n as u64))
        .map_err(|detail| {
            ConfigError::new(
                "",
                ErrorKind::InvalidValue {
                    value: format!("{s:?}"),
                    expected: EXPECTED.into(),
                    detail,
                },
            )
        })
}

/// Nanoseconds, or the reason the string is not a duration (`None`: plain syntax error).
fn parse_nanos(orig: &str) -> Result<u128, Option<String>> {
    let mut s = orig;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(None);
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        // The integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, rest) = s.split_at(int_len);
        s = rest;
        let mut int: u128 = 0;
        for b in int_digits.bytes() {
            int = int * 10 + u128::from(b - b'0');
            if int > MAX_NANOS {
                return Err(Some("it is too long".into()));
            }
        }
        // The fraction, computed as Go does (float, digits past int64 range ignored) so
        // both round the same way.
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut frac_len = 0;
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            for b in rest[..frac_len].bytes() {
                if frac > i64::MAX as u64 / 10 {
                    break;
                }
                frac = frac * 10 + u64::from(b - b'0');
                scale *= 10.0;
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(None);
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(Some("a unit is missing (ns, us, ms, s, m, h)".into())),
            other => {
                return Err(Some(format!(
                    "unknown unit {other:?} (ns, us, ms, s, m, h)"
                )))
            }
        };
        total += int * unit_nanos + (frac as f64 * (unit_nanos as f64 / scale)) as u128;
        if total > MAX_NANOS {
            return Err(Some("it is too long".into()));
        }
    }
    if negative && total != 0 {
        return Err(Some("it is negative".into()));
    }
    Ok(total)
}

/// Go's `Duration.String`: `0s`, `1.5µs`, `500ms`, `1m30s`, `24h0m0s`.
pub fn format_duration(d: Duration) -> String {
    let mut u = d.as_nanos();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            u if u < 1_000 => (0, "ns"),
            u if u < 1_000_000 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        let (frac, whole) = fmt_frac(u, prec);
        return format!("{whole}{frac}{unit}");
    }
    let (frac, secs) = fmt_frac(u, 9);
    u = secs;
    let mut out = format!("{}{frac}s", u % 60);
    u /= 60;
    if u > 0 {
        out = format!("{}m{out}", u % 60);
        u /= 60;
        if u > 0 {
            out = format!("{u}h{out}");
        }
    }
    out
}

/// Splits `v` into `v / 10^prec` and the fraction `.ddd` (trailing zeros dropped, empty
/// when zero).
fn fmt_frac(v: u128, prec: u32) -> (String, u128) {
    let div = 10u128.pow(prec);
    let (whole, rem) = (v / div, v % div);
    if rem == 0 {
        return (String::new(), whole);
    }
    let digits = format!("{rem:0width$}", width = prec as usize);
    (format!(".{}", digits.trim_end_matches('0')), whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("1s", S),
            ("500ms", 500 * MS),
            ("1m30s", M + 30 * S),
            ("1h", H),
            ("24h", 24 * H),
            ("1.5h", H + 30 * M),
            (".5s", S / 2),
            ("1.s", S),
            ("2us", 2 * US),
            ("2\u{b5}s", 2 * US),
            ("2\u{3bc}s", 2 * US),
            ("7ns", 7 * NS),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("1.000000001s", S + 1),
            ("0.3333333333333333333h", 1_200_000_000_000),
            ("+5s", 5 * S),
            ("2562047h", 2_562_047 * H),
        ];
        for (s, want) in cases {
            assert_eq!(
                parse_duration(s).unwrap(),
                Duration::from_nanos(*want),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_what_go_rejects_and_negatives() {
        let cases: &[(&str, &str)] = &[
            ("", r#""" is not a duration (e.g. 1m30s)"#),
            (
                "5 minutes",
                r#""5 minutes" is not a duration (e.g. 1m30s): unknown unit " minutes" (ns, us, ms, s, m, h)"#,
            ),
            (
                "1",
                r#""1" is not a duration (e.g. 1m30s): a unit is missing (ns, us, ms, s, m, h)"#,
            ),
            (
                "10",
                r#""10" is not a duration (e.g. 1m30s): a unit is missing (ns, us, ms, s, m, h)"#,
            ),
            ("s", r#""s" is not a duration (e.g. 1m30s)"#),
            (".s", r#"".s" is not a duration (e.g. 1m30s)"#),
            (
                "1d",
                r#""1d" is not a duration (e.g. 1m30s): unknown unit "d" (ns, us, ms, s, m, h)"#,
            ),
            (
                "-5s",
                r#""-5s" is not a duration (e.g. 1m30s): it is negative"#,
            ),
            (
                "9999999999h",
                r#""9999999999h" is not a duration (e.g. 1m30s): it is too long"#,
            ),
            (
                "1h 30m",
                r#""1h 30m" is not a duration (e.g. 1m30s): unknown unit "h " (ns, us, ms, s, m, h)"#,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).unwrap_err().to_string(), *want, "{s}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5\u{b5}s"),
            (500 * MS, "500ms"),
            (S, "1s"),
            (S + S / 2, "1.5s"),
            (M + 30 * S, "1m30s"),
            (H, "1h0m0s"),
            (24 * H, "24h0m0s"),
            (H + 2 * M + 3 * S + 4 * MS, "1h2m3.004s"),
        ];
        for (n, want) in cases {
            assert_eq!(format_duration(Duration::from_nanos(*n)), *want);
            assert_eq!(
                parse_duration(want).unwrap(),
                Duration::from_nanos(*n),
                "round trip {want}"
            );
        }
    }
}
