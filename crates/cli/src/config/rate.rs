//! Request rates (`upload-rate`): uploads per second as a plain number (`1`, `0.5`) or
//! with a unit (`50/s`, `60/m`, `60/min`, `3600/h`); `0` means unlimited.

/// Uploads per second, or `None` when `s` is not a rate (negative, not finite, unknown
/// unit).
pub(crate) fn parse_rate(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, per) = match s.split_once('/') {
        None => (s, 1.0),
        Some((n, unit)) => (
            n.trim(),
            match unit.trim().to_ascii_lowercase().as_str() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                _ => return None,
            },
        ),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let v = num.parse::<f64>().ok()? / per;
    v.is_finite().then_some(v)
}

/// What a rate error says is expected.
pub(crate) const EXPECTED: &str = "uploads per second (e.g. 1, 0.5, 50/s, 60/m; 0: unlimited)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("0.5", Some(0.5)),
            ("0", Some(0.0)),
            ("50/s", Some(50.0)),
            (" 60 / m ", Some(1.0)),
            ("30/min", Some(0.5)),
            ("3600/h", Some(1.0)),
            ("-1", None),
            ("1e3", None),
            ("inf", None),
            ("NaN", None),
            ("", None),
            ("/s", None),
            ("5/d", None),
            ("1.2.3", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rate(s), *want, "{s:?}");
        }
    }
}
