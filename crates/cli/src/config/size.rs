//! Byte sizes: a plain integer (`67108864`) or a number with a unit as Litestream's
//! `part-size` accepts through go-humanize: `B`, SI `K`/`KB`/`MB`/`GB`/`TB` (powers of
//! 1000) and IEC `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), case-insensitive, optional
//! space, fractions allowed (`1.5MiB`).

/// Bytes, or `None` when `s` is not a size.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_len);
    if num.is_empty() || num.bytes().filter(|&b| b == b'.').count() > 1 || num == "." {
        return None;
    }
    let mult: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return None,
    };
    if !num.contains('.') {
        return num.parse::<u64>().ok()?.checked_mul(mult);
    }
    let v = num.parse::<f64>().ok()? * mult as f64;
    (v.is_finite() && v < u64::MAX as f64).then_some(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("67108864", Some(64 << 20)),
            ("64MiB", Some(64 << 20)),
            ("64 MiB", Some(64 << 20)),
            ("64mib", Some(64 << 20)),
            ("5MB", Some(5_000_000)),
            ("5M", Some(5_000_000)),
            ("1.5KiB", Some(1536)),
            ("100B", Some(100)),
            ("1GiB", Some(1 << 30)),
            ("", None),
            ("MiB", None),
            ("1.2.3", None),
            ("-1", None),
            ("5 parsecs", None),
            ("99999999999999999999", None),
            ("20000000TiB", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_size(s), *want, "{s}");
        }
    }
}
