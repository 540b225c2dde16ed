//! Cron schedules: 5 fields (minute hour day-of-month month day-of-week) or
//! 6 with seconds first, evaluated in a time zone.

use std::fmt;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A validated cron schedule in a time zone.
#[derive(Clone)]
pub struct Schedule {
    pattern: String,
    cron: Cron,
    timezone: Tz,
}

/// Why a cron expression is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cron expression {pattern:?}: {detail}; expected 5 fields (minute hour day-of-month \
     month day-of-week, e.g. \"*/30 * * * *\") or 6 with seconds first (e.g. \"*/10 * * * * *\")"
)]
pub struct ScheduleError {
    /// The expression as written.
    pub pattern: String,
    /// What the parser objected to.
    pub detail: String,
}

impl Schedule {
    /// Parse a 5- or 6-field cron expression, evaluated in `timezone`.
    pub fn parse(pattern: &str, timezone: Tz) -> Result<Schedule, ScheduleError> {
        let err = |detail: String| ScheduleError {
            pattern: pattern.to_string(),
            detail,
        };
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(err(format!("it has {fields} fields")));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(pattern).map_err(|e| err(e.to_string()))?;
        // Patterns such as "0 0 30 2 *" parse but never match.
        let probe = Utc::now().with_timezone(&timezone);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(err("it never matches".to_string()));
        }
        Ok(Schedule {
            pattern: pattern.to_string(),
            cron,
            timezone,
        })
    }

    /// The expression as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The time zone it is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: croner keeps the sub-second part of its input.
        let after = after.with_nanosecond(0).unwrap_or(after);
        let local = after.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next `n` slots strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.pattern, self.timezone)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.pattern, self.timezone)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.timezone == other.timezone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn five_fields() {
        let s = Schedule::parse("*/30 * * * *", Tz::UTC).unwrap();
        let after = utc(2026, 1, 1, 10, 5, 0);
        assert_eq!(
            s.upcoming(after, 3),
            vec![
                utc(2026, 1, 1, 10, 30, 0),
                utc(2026, 1, 1, 11, 0, 0),
                utc(2026, 1, 1, 11, 30, 0)
            ]
        );
        // Strictly after: a slot equal to `after` is not returned.
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 10, 30, 0)),
            Some(utc(2026, 1, 1, 11, 0, 0))
        );
    }

    #[test]
    fn six_fields_have_seconds() {
        let s = Schedule::parse("*/10 * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 0, 3)),
            Some(utc(2026, 1, 1, 0, 0, 10))
        );
        // Sub-second input gives whole-second slots.
        let late = utc(2026, 1, 1, 0, 0, 10) + chrono::Duration::milliseconds(750);
        assert_eq!(s.next_after(late), Some(utc(2026, 1, 1, 0, 0, 20)));
    }

    #[test]
    fn time_zone_applies() {
        let s = Schedule::parse("0 9 * * *", "Europe/Paris".parse().unwrap()).unwrap();
        // 09:00 in Paris in January is 08:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 8, 0, 0))
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* * * * * * 2030",
            "x * * * *",
            "0 0 30 2 *",
        ] {
            let e = Schedule::parse(bad, Tz::UTC).unwrap_err();
            assert!(e.to_string().contains("expected 5 fields"), "{bad}: {e}");
        }
    }
}
