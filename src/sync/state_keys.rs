//! The mirror keys of the run-state store, validated: `immutable_tags` (a
//! regular expression over tags), `full_check_every` and `min_age`
//! (durations such as `"90s"`, `"30m"`, `"24h"` or `"7d"`).

use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use super::model::state::{MAX_STATE_INTERVAL, StatePolicy};

/// The keys as written.
pub(super) struct Keys<'a> {
    pub immutable_tags: Option<&'a Spanned<String>>,
    pub full_check_every: Option<&'a Spanned<String>>,
    pub min_age: Option<&'a Spanned<String>>,
}

/// The policy, or (key, span, message) of the first bad key.
pub(super) fn resolve(
    keys: &Keys<'_>,
) -> Result<StatePolicy, (&'static str, std::ops::Range<usize>, String)> {
    let mut policy = StatePolicy::default();
    if let Some(r) = keys.immutable_tags {
        let re = Regex::new(&format!("^(?:{})$", r.get_ref())).map_err(|e| {
            (
                "immutable_tags",
                r.span(),
                format!("invalid regular expression {:?}: {e}", r.get_ref()),
            )
        })?;
        policy.immutable_tags = Some(re);
    }
    if let Some(d) = keys.full_check_every {
        policy.full_check_every = interval("full_check_every", d)?;
        if policy.full_check_every.is_zero() {
            return Err((
                "full_check_every",
                d.span(),
                "full_check_every must be longer than 0s; drop immutable_tags to check every tag on every run".into(),
            ));
        }
    }
    if let Some(d) = keys.min_age {
        policy.min_age = Some(interval("min_age", d)?).filter(|d| !d.is_zero());
    }
    Ok(policy)
}

/// One duration key, at most [`MAX_STATE_INTERVAL`].
fn interval(
    key: &'static str,
    d: &Spanned<String>,
) -> Result<Duration, (&'static str, std::ops::Range<usize>, String)> {
    let value = parse_duration(d.get_ref()).ok_or_else(|| {
        (
            key,
            d.span(),
            format!(
                "{:?} is not a duration: expected a whole number and a unit, s, m, h or d, such as \"30m\" or \"24h\"",
                d.get_ref()
            ),
        )
    })?;
    if value > MAX_STATE_INTERVAL {
        return Err((
            key,
            d.span(),
            format!(
                "{:?} is longer than 30d, how long the run-state store keeps what it learns; give 30d or less",
                d.get_ref()
            ),
        ));
    }
    Ok(value)
}

/// `"90s"`, `"30m"`, `"24h"`, `"7d"`: a whole number and one unit.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: u64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 24 * 3600,
        _ => return None,
    };
    n.checked_mul(scale).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604800)));
        for bad in [
            "",
            "h",
            "24",
            "1.5h",
            "-1h",
            "1w",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
