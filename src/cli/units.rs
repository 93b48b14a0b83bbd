//! Units on the command line: one parser for durations, one for sizes, used by every command.
//!
//! Every duration flag (`-d`, `--warmup`, `--timeout`, `--interval`, `serve --idle-timeout`, ...)
//! takes [`duration`]: a number with an optional unit, `500ms`, `30s`, `2m`, `1h`, `1d`, `250us`; a bare
//! number is seconds, and fractions are allowed (`0.5`, `1.5m`). Every size flag (`-s`,
//! `--max-frame`, `--queue-limit`, ...) takes [`bytes`]: `64K`, `1M`, `2G` in powers of 1024
//! (`KiB`, `MiB`, `GiB` too); a bare number is bytes. clap calls these as `value_parser`s, so a bad
//! value is one line naming the flag, and exit code 2.
//!
//! Next: `load.rs`, the load generator's flags.

use std::time::Duration;

/// Splits `12.5ms` into (`12.5`, `ms`).
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

/// A duration: `500ms`, `30s`, `2m`, `1h`, `1d`, `100us`, `0.5` (a bare number is seconds).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!("'{text}' is not a duration (a number with an optional unit: 500ms, 30s, 2m, 1h)")
    };
    let (number, unit) = split_number(text);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds_per_unit = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())
}

/// A duration that must be more than zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        Duration::ZERO => Err(format!("'{text}' must be more than zero")),
        d => Ok(d),
    }
}

/// A size in bytes: `64K`, `1M`, `2G` (powers of 1024; `KiB`, `MiB`, `GiB` too), or a bare number.
pub fn bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad =
        || format!("'{text}' is not a size (a number with an optional unit: 512, 64K, 1M, 2G)");
    let (number, unit) = split_number(text);
    if number.contains('.') {
        return Err(bad());
    }
    let value: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit {
        "" | "B" => 0,
        "K" | "k" | "KiB" | "KB" => 10,
        "M" | "MiB" | "MB" => 20,
        "G" | "GiB" | "GB" => 30,
        _ => return Err(bad()),
    };
    value.checked_mul(1 << shift).ok_or_else(bad)
}

/// [`bytes`] within `low..=high`, for flags with a range.
pub fn bytes_in(text: &str, low: u64, high: u64) -> Result<u64, String> {
    let n = bytes(text)?;
    if (low..=high).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} bytes is not in {low}..={high}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        for bad in ["", "-1", "-5s", "abc", "5 parsecs", "1.2.3s", "s"] {
            let message = duration(bad).unwrap_err();
            assert!(message.contains("is not a duration"), "{bad:?}: {message}");
        }
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn sizes_are_powers_of_1024() {
        assert_eq!(bytes("64K"), Ok(64 * 1024));
        assert_eq!(bytes("1M"), Ok(1 << 20));
        assert_eq!(bytes("2G"), Ok(2 << 30));
        assert_eq!(bytes("4KiB"), Ok(4096));
        assert_eq!(bytes("100"), Ok(100));
        for bad in ["", "-1", "1.5K", "12X", "K"] {
            assert!(bytes(bad).is_err(), "{bad:?}");
        }
        assert!(bytes("99999999999G").is_err());
        assert!(bytes_in("0", 1, 10).is_err());
    }
}
