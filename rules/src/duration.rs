//! `expiresIn`: `"<n> <unit>"` with seconds, minutes, hours, days, weeks or years,
//! singular or plural (`"30 minutes"`, `"1 day"`, `"5 years"`).

/// The accepted forms, for error messages.
pub const ACCEPTED_FORMS: &str =
    "\"<n> <unit>\" where n is a positive whole number and unit is one of second(s), minute(s), hour(s), day(s), week(s), year(s); for example \"30 minutes\", \"12 hours\", \"8 days\", \"5 years\"";

/// The default lifetime when `expiresIn` is absent: one day.
pub const DEFAULT_SECS: u64 = 24 * 3600;

/// Parses an `expiresIn` value into seconds. `max_secs` bounds the result.
pub fn parse_expires_in(s: &str, max_secs: u64) -> Result<u64, String> {
    let bad = || format!("expiresIn {s:?} is not valid; use {ACCEPTED_FORMS}");
    let mut parts = s.split(' ');
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = n.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    let unit_secs = match unit {
        "second" | "seconds" => 1,
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        "week" | "weeks" => 7 * 86_400,
        "year" | "years" => 365 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(bad)?;
    if secs > max_secs {
        return Err(format!("expiresIn {s:?} is longer than the longest allowed lifetime of {} days", max_secs / 86_400));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    const MAX: u64 = 10 * 366 * 86_400;

    #[test]
    fn forms() {
        assert_eq!(parse_expires_in("30 minutes", MAX), Ok(1800));
        assert_eq!(parse_expires_in("12 hours", MAX), Ok(43_200));
        assert_eq!(parse_expires_in("8 days", MAX), Ok(8 * 86_400));
        assert_eq!(parse_expires_in("1 day", MAX), Ok(86_400));
        assert_eq!(parse_expires_in("5 years", MAX), Ok(5 * 365 * 86_400));
        assert_eq!(parse_expires_in("30 seconds", MAX), Ok(30));
        assert_eq!(parse_expires_in("1 week", MAX), Ok(604_800));
    }

    #[test]
    fn bad_forms_list_the_accepted_ones() {
        for s in [
            "",
            "30",
            "minutes",
            "0 days",
            "-1 days",
            "1.5 days",
            "30 Minutes",
            "30  minutes",
            " 30 minutes",
            "30 fortnights",
            "1e3 days",
            "+3 days",
            "99999999999 days",
        ] {
            let e = parse_expires_in(s, MAX).unwrap_err();
            assert!(e.contains("second(s)"), "{s}: {e}");
        }
        assert!(parse_expires_in("20 years", MAX).unwrap_err().contains("longest"));
    }
}
