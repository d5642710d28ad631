//! Durations in config values: `"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"1m30s"`, or a bare integer (seconds).

use std::time::Duration;

/// Parses a duration string.
///
/// Grammar: one or more `<digits><unit>` groups with no spaces, units `ms`, `s`, `m`, `h`
/// (`"1h30m"`, `"2s500ms"`). A string of digits alone (`"10"`) means seconds, like a TOML integer.
/// Errors are short phrases suitable after "invalid duration `...`: ".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_unbounded(s)?;
    if d > MAX_DURATION {
        return Err("duration too long (at most 365 days)".into());
    }
    Ok(d)
}

/// The longest timeout or grace period accepted: a year is "forever" for a boot, and keeps
/// `Instant + duration` far from overflow in PID 1.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

fn parse_unbounded(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.chars().any(char::is_whitespace) {
        let joined: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        return Err(match parse_unbounded(&joined) {
            Ok(_) if joined.len() <= 32 => format!("no spaces allowed (write \"{joined}\")"),
            _ => "no spaces allowed".into(),
        });
    }
    if s.contains('.') {
        return Err("no fractions: use a smaller unit (\"1500ms\", \"1m30s\")".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "number too large".into());
    }
    let mut total: u128 = 0; // milliseconds
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected a number followed by a unit (ms, s, m, h)".into());
        }
        let (num, tail) = rest.split_at(digits);
        let n: u128 = num.parse().map_err(|_| "number too large".to_string())?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("missing unit after `{num}` (use ms, s, m or h)")),
            other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration too large".to_string())?;
        rest = tail;
    }
    let ms = u64::try_from(total).map_err(|_| "duration too large".to_string())?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration in the same grammar, shortest exact form (`10s`, `1m30s`, `500ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (scale, unit) in [(3_600_000u128, "h"), (60_000, "m"), (1_000, "s"), (1, "ms")] {
        if ms >= scale {
            out.push_str(&format!("{}{unit}", ms / scale));
            ms %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejected() {
        for bad in [
            "",
            "s",
            "10 s",
            "10x",
            "1.5s",
            "-1s",
            "10sec",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A space or a fraction is named as such: before, both read "missing unit after `10`"
    /// although a unit was there.
    #[test]
    fn spaces_and_fractions_are_named() {
        assert_eq!(
            parse_duration("10 s"),
            Err("no spaces allowed (write \"10s\")".to_string())
        );
        assert_eq!(
            parse_duration(" 1m 30s "),
            Err("no spaces allowed (write \"1m30s\")".to_string())
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err("no fractions: use a smaller unit (\"1500ms\", \"1m30s\")".to_string())
        );
        assert_eq!(
            parse_duration("10"),
            Ok(Duration::from_secs(10)),
            "digits alone stay seconds"
        );
    }

    #[test]
    fn round_trip() {
        for ms in [
            0u64, 1, 999, 1000, 1500, 60_000, 90_000, 3_600_000, 3_661_001,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
