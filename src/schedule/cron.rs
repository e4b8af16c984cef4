//! A schedule's cron expression in its time zone: parsed once when the
//! commit is read, then asked for the ticks around an instant.
//!
//! The expression is POSIX/Vixie cron's five fields (minute hour
//! day-of-month month day-of-week; names such as `MON` and `JAN`; day 0
//! and 7 are Sunday; when both day fields are restricted, a day matching
//! either fires) or one of the macros `@yearly @annually @monthly @weekly
//! @daily @midnight @hourly`. Six or seven fields (seconds, years) are
//! refused: a schedule fires at most once a minute. The parsing and the
//! iteration are croner's; the time zones are jiff's, with the IANA
//! database compiled in.
//!
//! # Daylight saving time
//! Ticks follow the zone's wall clock, as croner (and Vixie cron) does:
//! - A **fixed-time** expression (one minute and one hour, `30 2 * * *`):
//!   a wall time the clock skips fires once, at the first instant after
//!   the gap (02:30 on the day Paris jumps from 02:00 to 03:00 fires at
//!   03:00 CEST); a wall time the clock repeats fires once, on its first
//!   occurrence (02:30 CEST, not again at 02:30 CET).
//! - Any other expression (a wildcard, list, range or step in the minute or
//!   hour field, `*/30 * * * *`, `0 * * * *`): wall times that do not exist
//!   are not fired; a repeated hour fires in both its halves, as the
//!   distinct instants they are (so an hourly schedule keeps firing once
//!   every real hour).
//!
//! Either way a tick is an instant, written in UTC: no instant is two
//! ticks, and each tick fires at most once (see `ticker`).
//!
//! A leaf: it uses nothing of the crate.

use std::fmt;
use std::str::FromStr;

use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A schedule's expression and time zone, checked.
#[derive(Clone)]
pub struct Cron {
    /// As written in config.json.
    expression: String,
    /// The IANA name of its zone, as the database spells it.
    timezone: String,
    /// The expression and the zone ([`Cron::identity`]).
    identity: String,
    zone: TimeZone,
    cron: croner::Cron,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?} in {})", self.expression, self.timezone)
    }
}

/// The macros and the five fields each stands for.
const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// What the error messages show as the accepted syntax.
const SYNTAX: &str = "5 fields: minute hour day-of-month month day-of-week (e.g. \"*/5 * * * *\"), or @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly";

/// The zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

impl Cron {
    /// Parses `expression` in `timezone` (IANA, e.g. `Europe/Paris`; UTC
    /// when None), saying what is wrong and how to write it.
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Cron, String> {
        let trimmed = expression.trim();
        let fields = match MACROS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
        {
            Some((_, fields)) => (*fields).to_string(),
            None if trimmed.starts_with('@') => {
                return Err(format!(
                    "cron `{trimmed}` is not a known macro; use {SYNTAX}"
                ))
            }
            None => trimmed.to_string(),
        };
        match fields.split_whitespace().count() {
            5 => {}
            6 | 7 => {
                return Err(format!(
                    "cron `{trimmed}` has {} fields: a seconds field would fire more often than once a minute, which a schedule may not; use {SYNTAX}",
                    fields.split_whitespace().count()
                ))
            }
            n => {
                return Err(format!(
                    "cron `{trimmed}` has {n} field{}; use {SYNTAX}",
                    if n == 1 { "" } else { "s" }
                ))
            }
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(&fields)
            .map_err(|e| format!("cron `{trimmed}` is not valid ({e}); use {SYNTAX}"))?;
        let name = timezone.unwrap_or(DEFAULT_TIMEZONE).trim();
        let zone = TimeZone::get(name).map_err(|_| {
            format!(
                "timezone `{name}` is not a known IANA time zone: use a name such as \"Europe/Paris\", \"America/New_York\" or \"UTC\""
            )
        })?;
        let timezone = zone.iana_name().unwrap_or(name).to_string();
        let parsed = Cron {
            expression: trimmed.to_string(),
            identity: format!("{trimmed} {timezone}"),
            timezone,
            zone,
            cron,
        };
        // `0 0 30 2 *` parses and never comes: refused rather than kept
        // for a schedule that never fires.
        if parsed.next_after(Timestamp::now()).is_none() {
            return Err(format!(
                "cron `{trimmed}` never fires (no such date): check the day-of-month and month fields"
            ));
        }
        Ok(parsed)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// What identifies its ticks: the expression and the zone. A commit
    /// that changes either makes a new schedule (see `ticker`); one that
    /// changes only its body or parameters does not.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The first tick strictly after `t`; None if there is none (beyond
    /// croner's search horizon).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The last tick at or before `t`, if any.
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_previous_occurrence(&zoned, true)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// A tick as `{{SCHEDULED_TIME}}` and the run's `scheduledTime` write it:
/// RFC 3339 in UTC, to the second, with `Z`.
pub fn rfc3339(t: Timestamp) -> String {
    // Ticks fall on whole minutes; the format never shows a fraction.
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reads a time as [`rfc3339`] writes it (for tests and the store's marks).
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    Timestamp::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn ticks(cron: &Cron, from: &str, n: usize) -> Vec<String> {
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = cron.next_after(t).expect("a next tick");
            out.push(rfc3339(t));
        }
        out
    }

    #[test]
    fn five_fields_and_the_macros_parse_in_utc_by_default() {
        let every = Cron::parse("*/5 * * * *", None).expect("valid");
        assert_eq!(every.timezone(), "UTC");
        assert_eq!(
            ticks(&every, "2026-01-01T00:03:10Z", 2),
            ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"]
        );
        for (m, first) in [
            ("@hourly", "2026-01-01T01:00:00Z"),
            ("@daily", "2026-01-02T00:00:00Z"),
            ("@midnight", "2026-01-02T00:00:00Z"),
            ("@weekly", "2026-01-04T00:00:00Z"),
            ("@monthly", "2026-02-01T00:00:00Z"),
            ("@yearly", "2027-01-01T00:00:00Z"),
            ("@ANNUALLY", "2027-01-01T00:00:00Z"),
        ] {
            let c = Cron::parse(m, None).expect(m);
            assert_eq!(ticks(&c, "2026-01-01T00:30:00Z", 1), [first], "{m}");
        }
        // Names, and Sunday as 0 and 7.
        let c = Cron::parse("0 9 * JAN sun", Some("UTC")).expect("names");
        assert_eq!(
            ticks(&c, "2026-01-01T00:00:00Z", 1),
            ["2026-01-04T09:00:00Z"]
        );
        let c = Cron::parse("0 9 * * 7", None).expect("7 is Sunday");
        assert_eq!(
            ticks(&c, "2026-01-01T00:00:00Z", 1),
            ["2026-01-04T09:00:00Z"]
        );
    }

    #[test]
    fn what_is_refused_says_why() {
        for (expr, tz, says) in [
            ("* * * * * *", None, "more often than once a minute"),
            ("0 * * * * * 2026", None, "has 7 fields"),
            ("* * * *", None, "has 4 fields"),
            ("", None, "has 0 fields"),
            ("61 * * * *", None, "is not valid"),
            ("@reboot", None, "not a known macro"),
            ("@every 5s", None, "not a known macro"),
            ("0/10 * * * *", None, "is not valid"),
            ("0 0 30 2 *", None, "never fires"),
            (
                "* * * * *",
                Some("Mars/Olympus"),
                "not a known IANA time zone",
            ),
            ("* * * * *", Some(""), "not a known IANA time zone"),
        ] {
            let e = Cron::parse(expr, tz).expect_err(expr);
            assert!(e.contains(says), "{expr}: {e}");
        }
    }

    #[test]
    fn a_zone_name_is_kept_as_the_database_spells_it() {
        let c = Cron::parse("0 * * * *", Some("europe/paris")).expect("valid");
        assert_eq!(c.timezone(), "Europe/Paris");
        assert_eq!(c.identity(), "0 * * * * Europe/Paris");
    }

    /// 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST.
    #[test]
    fn the_skipped_hour_in_paris() {
        // Fixed time: 02:30 does not exist; it fires once, at 03:00 CEST.
        let fixed = Cron::parse("30 2 * * *", Some("Europe/Paris")).expect("valid");
        assert_eq!(
            ticks(&fixed, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
        );
        // Interval: 02:00 and 02:30 do not exist and do not fire; the
        // ticks around the gap are 30 real minutes apart.
        let interval = Cron::parse("*/30 * * * *", Some("Europe/Paris")).expect("valid");
        assert_eq!(
            ticks(&interval, "2026-03-29T00:10:00Z", 3),
            [
                "2026-03-29T00:30:00Z", // 01:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST
                "2026-03-29T01:30:00Z", // 03:30 CEST
            ]
        );
    }

    /// 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET again.
    #[test]
    fn the_repeated_hour_in_paris() {
        // Fixed time: 02:30 comes twice; it fires once, on the first.
        let fixed = Cron::parse("30 2 * * *", Some("Europe/Paris")).expect("valid");
        assert_eq!(
            ticks(&fixed, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        // Interval: both halves fire, each instant once.
        let interval = Cron::parse("*/30 * * * *", Some("Europe/Paris")).expect("valid");
        assert_eq!(
            ticks(&interval, "2026-10-24T23:50:00Z", 5),
            [
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET
                "2026-10-25T01:30:00Z", // 02:30 CET
                "2026-10-25T02:00:00Z", // 03:00 CET
            ]
        );
        let hourly = Cron::parse("@hourly", Some("Europe/Paris")).expect("valid");
        assert_eq!(
            ticks(&hourly, "2026-10-24T23:30:00Z", 3),
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z"
            ]
        );
    }

    #[test]
    fn the_last_tick_at_or_before_an_instant() {
        let c = Cron::parse("*/5 * * * *", None).expect("valid");
        let last = |s: &str| c.last_at_or_before(at(s)).map(rfc3339);
        assert_eq!(
            last("2026-01-01T00:07:00Z").as_deref(),
            Some("2026-01-01T00:05:00Z")
        );
        assert_eq!(
            last("2026-01-01T00:05:00Z").as_deref(),
            Some("2026-01-01T00:05:00Z")
        );
        let fixed = Cron::parse("30 2 * * *", Some("Europe/Paris")).expect("valid");
        assert_eq!(
            fixed
                .last_at_or_before(at("2026-03-29T01:10:00Z"))
                .map(rfc3339)
                .as_deref(),
            Some("2026-03-29T01:00:00Z"),
            "backwards too, the skipped 02:30 is 03:00 CEST"
        );
    }

    #[test]
    fn a_tick_is_written_in_utc_with_z() {
        assert_eq!(
            rfc3339(at("2026-03-29T03:00:00+02:00")),
            "2026-03-29T01:00:00Z"
        );
        assert_eq!(
            parse_rfc3339("2026-03-29T01:00:00Z"),
            Some(at("2026-03-29T01:00:00Z"))
        );
    }
}
