//! Numbers on the command line: one parser for durations, one for sizes, one for counts, used by
//! every command.
//!
//! Every duration flag (`-d`, `--warmup`, `--timeout`, `--interval`, `serve --idle-timeout`, ...)
//! takes [`duration`]: a number with an optional unit, `500ms`, `30s`, `2m`, `1h`, `1d`, `250us`; a bare
//! number is seconds, and fractions are allowed (`0.5`, `1.5m`). Every size flag (`-s`,
//! `--max-frame`, `--queue-limit`, ...) takes [`bytes`]: `64K`, `1M`, `2G` in powers of 1024
//! (`KiB`, `MiB`, `GiB` too); a bare number is bytes. Counts with a range (`--workers`,
//! `--max-connections`, `-c`) take [`count_in`]. clap calls these as `value_parser`s, so a bad
//! value is one line naming the flag, with the reason in words (`a duration cannot be negative`,
//! `must be 1 or more`), and exit code 2.
//!
//! A value that starts with `-` looks like a flag to clap: the flags taking these values say
//! `allow_hyphen_values`, so `-d -1` reaches [`duration`] and is refused for being negative rather
//! than reported as an unknown argument `-1`.
//!
//! Next: `load.rs`, the load generator's flags.

use std::fmt::Display;
use std::ops::{Bound, RangeBounds};
use std::str::FromStr;
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
    if text.starts_with('-') {
        return Err("a duration cannot be negative".into());
    }
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
        Duration::ZERO => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

/// A size in bytes: `64K`, `1M`, `2G` (powers of 1024; `KiB`, `MiB`, `GiB` too), or a bare number.
pub fn bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err("a size cannot be negative".into());
    }
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
    } else if high == u64::MAX {
        Err(format!("must be {} or more", size_in_words(low)))
    } else {
        Err(format!(
            "must be from {} to {}",
            size_in_words(low),
            size_in_words(high)
        ))
    }
}

/// `1 byte`, `16M`, `4294967295 bytes`: a size as [`bytes`] would take it, in its largest exact unit.
fn size_in_words(n: u64) -> String {
    match n {
        1 => "1 byte".into(),
        n if n > 0 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n > 0 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n > 0 && n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A whole number within `range`: `--workers 4`. Out of range, the reason says the range
/// (`must be 1 or more`, `must be from 1 to 256`) rather than the type's limits.
pub fn count_in<T>(text: &str, range: impl RangeBounds<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    let text = text.trim();
    let out_of_range = || match (range.start_bound(), range.end_bound()) {
        (Bound::Included(low), Bound::Unbounded) => format!("must be {low} or more"),
        (Bound::Included(low), Bound::Included(high)) => format!("must be from {low} to {high}"),
        (Bound::Unbounded, Bound::Included(high)) => format!("must be {high} or less"),
        _ => "out of range".into(),
    };
    match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        Ok(_) => Err(out_of_range()),
        // A whole number the type cannot hold: below zero, or more digits than it has room for.
        Err(_) if text.parse::<i128>().is_ok() && text.starts_with('-') => Err(out_of_range()),
        Err(_) if text.parse::<i128>().is_ok() => Err(format!("'{text}' is too large")),
        Err(_) => Err(format!("'{text}' is not a whole number")),
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
        for bad in ["", "abc", "5 parsecs", "1.2.3s", "s"] {
            let message = duration(bad).unwrap_err();
            assert!(message.contains("is not a duration"), "{bad:?}: {message}");
        }
        for negative in ["-1", "-5s", "-0.5"] {
            let message = duration(negative).unwrap_err();
            assert_eq!(message, "a duration cannot be negative", "{negative:?}");
        }
        assert_eq!(
            positive_duration("0s"),
            Err("must be more than zero".to_string())
        );
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
        assert_eq!(bytes("-1"), Err("a size cannot be negative".to_string()));
        assert!(bytes("99999999999G").is_err());
        assert_eq!(
            bytes_in("0", 1, u64::MAX),
            Err("must be 1 byte or more".to_string())
        );
        assert_eq!(
            bytes_in("32M", 1, 16 << 20),
            Err("must be from 1 byte to 16M".to_string())
        );
    }

    #[test]
    fn counts_say_their_range_in_words() {
        assert_eq!(count_in("4", 1u64..=256), Ok(4));
        assert_eq!(count_in(" 7 ", 1u64..), Ok(7));
        assert_eq!(count_in("0", 1u64..), Err("must be 1 or more".to_string()));
        assert_eq!(count_in("-1", 1u64..), Err("must be 1 or more".to_string()));
        assert_eq!(
            count_in("300", 1u64..=256),
            Err("must be from 1 to 256".to_string())
        );
        assert_eq!(
            count_in("99999999999", 0u32..),
            Err("'99999999999' is too large".to_string())
        );
        assert_eq!(count_in("0", 1i32..), Err("must be 1 or more".to_string()));
        for bad in ["many", "1.5", "", "4K"] {
            assert_eq!(
                count_in(bad, 1u64..),
                Err(format!("'{bad}' is not a whole number"))
            );
        }
    }
}
