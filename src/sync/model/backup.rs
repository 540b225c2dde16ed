//! A validated `backup` template with its `backup_keep`: the names of a
//! tag's backups, and which tags are backups. Writing them is in
//! [`crate::sync::backup`].

use regex::Regex;

/// Largest `backup_keep`: each backup rewrites up to this many tags.
pub const MAX_BACKUP_KEEP: usize = 20;

/// A validated `backup` template with its `backup_keep`.
#[derive(Debug, Clone)]
pub struct Backup {
    template: String,
    keep: usize,
    matcher: Regex,
}

impl Backup {
    /// Parse `template` with `keep` backups; an error says what is wrong.
    pub fn new(template: &str, keep: usize) -> Result<Backup, String> {
        let tag_count = template.matches("{tag}").count();
        if tag_count != 1 {
            return Err(format!(
                "backup template {template:?} must contain {{tag}} exactly once, e.g. \"{{tag}}-prev\""
            ));
        }
        let has_n = match template.matches("{n}").count() {
            0 => false,
            1 => true,
            _ => {
                return Err(format!(
                    "backup template {template:?} has {{n}} more than once"
                ));
            }
        };
        let literal = template.replace("{tag}", "").replace("{n}", "");
        if literal.is_empty() {
            return Err(format!(
                "backup template {template:?} names the tag itself: add a suffix or prefix, e.g. \"{{tag}}-prev\""
            ));
        }
        if !literal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '{' | '}'))
        {
            return Err(format!(
                "backup template {template:?}: outside {{tag}} and {{n}} only letters, digits, '_', '.' and '-' are allowed"
            ));
        }
        if !(1..=MAX_BACKUP_KEEP).contains(&keep) {
            return Err(format!(
                "backup_keep = {keep}: expected 1 to {MAX_BACKUP_KEEP}"
            ));
        }
        if keep > 1 && !has_n {
            return Err(format!(
                "backup_keep = {keep} needs a counter in the template to name {keep} backups, e.g. \"{template}{{n}}\""
            ));
        }
        let mut pattern = String::from("^");
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            pattern.push_str(&regex::escape(&rest[..at]));
            if rest[at..].starts_with("{tag}") {
                pattern.push_str(".+");
                rest = &rest[at + 5..];
            } else if rest[at..].starts_with("{n}") {
                pattern.push_str("[0-9]+");
                rest = &rest[at + 3..];
            } else {
                return Err(format!(
                    "backup template {template:?}: only {{tag}} and {{n}} may appear in braces"
                ));
            }
        }
        if rest.contains('}') {
            return Err(format!(
                "backup template {template:?}: only {{tag}} and {{n}} may appear in braces"
            ));
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let matcher = Regex::new(&pattern).map_err(|e| format!("backup template: {e}"))?;
        Ok(Backup {
            template: template.to_string(),
            keep,
            matcher,
        })
    }

    /// The template as written.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// How many backups of one tag are kept.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// The `n`th backup tag of `tag` (1 is the newest).
    pub fn name(&self, tag: &str, n: usize) -> String {
        self.template
            .replace("{n}", &n.to_string())
            .replace("{tag}", tag)
    }

    /// True when `tag` could have been written by this template (for any
    /// tag and counter): such tags are neither mirrored over nor pruned.
    pub fn is_backup_tag(&self, tag: &str) -> bool {
        self.matcher.is_match(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let b = Backup::new("{tag}-prev", 1).unwrap();
        assert_eq!(b.name("1.0", 1), "1.0-prev");
        assert!(b.is_backup_tag("1.0-prev"));
        assert!(!b.is_backup_tag("1.0"));
        assert!(!b.is_backup_tag("-prev"));
        let b = Backup::new("{tag}-prev{n}", 3).unwrap();
        assert_eq!(b.name("latest", 2), "latest-prev2");
        assert!(b.is_backup_tag("latest-prev12"));
        assert!(!b.is_backup_tag("latest-prev"));
        let b = Backup::new("backup-{n}.{tag}", 2).unwrap();
        assert!(b.is_backup_tag("backup-1.v2.0"));
        assert!(!b.is_backup_tag("backupX1.v2.0"), "the dot is literal");
    }

    #[test]
    fn bad_templates() {
        for (t, keep, want) in [
            ("prev", 1, "{tag}"),
            ("{tag}-{tag}", 1, "{tag}"),
            ("{tag}", 1, "suffix"),
            ("{tag}-prev", 2, "counter"),
            ("{tag}-{x}", 1, "braces"),
            ("{tag}/prev", 1, "allowed"),
            ("{tag}-prev{n}", 0, "backup_keep"),
            ("{tag}-prev{n}", 21, "backup_keep"),
            ("{tag}-{n}{n}", 2, "more than once"),
        ] {
            let e = Backup::new(t, keep).unwrap_err();
            assert!(e.contains(want), "{t} {keep}: {e}");
        }
    }
}
