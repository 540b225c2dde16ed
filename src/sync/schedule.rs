//! Schedules: cron expressions of 5 fields (minute hour day-of-month month
//! day-of-week) or 6 with seconds first, the macros `@hourly`, `@daily`,
//! `@midnight`, `@weekly`, `@monthly`, `@yearly` and `@annually`, evaluated
//! in a time zone; or a fixed interval (`interval = "12h"`) counted from
//! the moment the config was read.

use std::fmt;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A validated schedule: a cron expression in a time zone, or an interval.
#[derive(Clone)]
pub struct Schedule {
    pattern: String,
    when: When,
    timezone: Tz,
}

/// How the slots of a [`Schedule`] are found.
#[derive(Clone)]
enum When {
    /// The slots of a cron expression.
    Cron(Box<Cron>),
    /// Every `every` after `from` (the moment the config was read).
    Every {
        every: Duration,
        from: DateTime<Utc>,
    },
}

/// The macros accepted in place of a cron expression, and what they mean.
pub const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// The shortest interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Why a cron expression is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cron expression {pattern:?}: {detail}; expected 5 fields (minute hour day-of-month \
     month day-of-week, e.g. \"*/30 * * * *\"), 6 with seconds first (e.g. \"*/10 * * * * *\") \
     or a macro (@hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually)"
)]
pub struct ScheduleError {
    /// The expression as written.
    pub pattern: String,
    /// What the parser objected to.
    pub detail: String,
}

impl Schedule {
    /// Parse a 5- or 6-field cron expression or a macro, evaluated in `timezone`.
    pub fn parse(pattern: &str, timezone: Tz) -> Result<Schedule, ScheduleError> {
        let err = |detail: String| ScheduleError {
            pattern: pattern.to_string(),
            detail,
        };
        let expression = match pattern.trim() {
            m if m.starts_with('@') => MACROS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(m))
                .map(|(_, cron)| *cron)
                .ok_or_else(|| err(format!("{m} is not a known macro")))?,
            _ => pattern,
        };
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(err(format!("it has {fields} fields")));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| err(e.to_string()))?;
        // Patterns such as "0 0 30 2 *" parse but never match.
        let probe = Utc::now().with_timezone(&timezone);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(err("it never matches".to_string()));
        }
        Ok(Schedule {
            pattern: pattern.to_string(),
            when: When::Cron(Box::new(cron)),
            timezone,
        })
    }

    /// An interval such as `12h`, `30m`, `1h30m`, `90s` or `2d`, its slots
    /// counted from `now`; `timezone` only shows the slots.
    pub fn interval(text: &str, timezone: Tz, now: DateTime<Utc>) -> Result<Schedule, String> {
        let every = parse_interval(text)?;
        Ok(Schedule {
            pattern: text.trim().to_string(),
            when: When::Every {
                every,
                from: now.with_nanosecond(0).unwrap_or(now),
            },
            timezone,
        })
    }

    /// The interval of an interval schedule.
    pub fn every(&self) -> Option<Duration> {
        match &self.when {
            When::Every { every, .. } => Some(*every),
            When::Cron(_) => None,
        }
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
        match &self.when {
            When::Cron(cron) => cron
                .find_next_occurrence(&after.with_timezone(&self.timezone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            When::Every { every, from } => {
                let step = chrono::Duration::from_std(*every).ok()?;
                let passed = (after - *from).num_seconds().max(0) as u64;
                let n = passed / every.as_secs().max(1) + 1;
                from.checked_add_signed(step.checked_mul(i32::try_from(n).ok()?)?)
            }
        }
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

/// `12h`, `30m`, `1h30m`, `90s`, `2d`, `1w`: whole numbers with a unit
/// each, at least [`MIN_INTERVAL`].
fn parse_interval(text: &str) -> Result<Duration, String> {
    let expected = "expected a duration such as \"12h\", \"30m\", \"1h30m\" or \"2d\" \
                    (units s, m, h, d, w)";
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("the interval is empty: {expected}"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(format!("{t:?} is not a duration: {expected}")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{t:?} is not a duration: {expected}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= 100 * 365 * 86_400)
            .ok_or_else(|| format!("{t:?} is too long: at most 100 years"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{t:?} has a number without a unit: {expected}"));
    }
    let every = Duration::from_secs(total);
    if every < MIN_INTERVAL {
        return Err(format!("{t:?} is zero: {expected}"));
    }
    Ok(every)
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} in {})", self.pattern, self.timezone)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.when {
            When::Cron(_) => write!(f, "{} ({})", self.pattern, self.timezone),
            When::Every { .. } => write!(f, "every {} (the first run at start)", self.pattern),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
            && self.timezone == other.timezone
            && self.every() == other.every()
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
    fn macros() {
        let after = utc(2026, 1, 7, 10, 5, 0); // a Wednesday
        for (m, next) in [
            ("@hourly", utc(2026, 1, 7, 11, 0, 0)),
            ("@daily", utc(2026, 1, 8, 0, 0, 0)),
            ("@midnight", utc(2026, 1, 8, 0, 0, 0)),
            ("@weekly", utc(2026, 1, 11, 0, 0, 0)),
            ("@monthly", utc(2026, 2, 1, 0, 0, 0)),
            ("@yearly", utc(2027, 1, 1, 0, 0, 0)),
            ("@ANNUALLY", utc(2027, 1, 1, 0, 0, 0)),
        ] {
            let s = Schedule::parse(m, Tz::UTC).unwrap();
            assert_eq!(s.next_after(after), Some(next), "{m}");
            assert_eq!(s.pattern(), m);
        }
        let e = Schedule::parse("@fortnightly", Tz::UTC).unwrap_err();
        assert!(
            e.to_string().contains("@fortnightly is not a known macro"),
            "{e}"
        );
        assert!(e.to_string().contains("@hourly"), "{e}");
    }

    #[test]
    fn intervals() {
        let from = utc(2026, 1, 1, 10, 0, 0);
        let s = Schedule::interval("1h30m", Tz::UTC, from).unwrap();
        assert_eq!(s.every(), Some(Duration::from_secs(5400)));
        assert_eq!(
            s.upcoming(from, 2),
            vec![utc(2026, 1, 1, 11, 30, 0), utc(2026, 1, 1, 13, 0, 0)]
        );
        // Slots stay on the grid whatever time is asked about.
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 11, 30, 0)),
            Some(utc(2026, 1, 1, 13, 0, 0))
        );
        assert_eq!(
            s.next_after(utc(2026, 1, 1, 12, 59, 59)),
            Some(utc(2026, 1, 1, 13, 0, 0))
        );
        assert_eq!(s.to_string(), "every 1h30m (the first run at start)");
        for (ok, secs) in [
            ("12h", 43_200),
            ("90s", 90),
            ("2d", 172_800),
            ("1w", 604_800),
        ] {
            let s = Schedule::interval(ok, Tz::UTC, from).unwrap();
            assert_eq!(s.every(), Some(Duration::from_secs(secs)), "{ok}");
        }
        for bad in ["", "12", "0s", "h", "12x", "1.5h", "-1h", "99999999999w"] {
            let e = Schedule::interval(bad, Tz::UTC, from).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
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
