//! Errors of the config file: [`ConfigError`] names the file, the line
//! where known, the key and what was expected; [`Ctx`] builds them from
//! positions in the file's text.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// An invalid or unreadable config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// The key concerned (`mirror[2].schedule`, `defaults.timezone`), where known.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ", key {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Builds errors that point into one file's text.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn line_of(&self, span: &Range<usize>) -> Option<usize> {
        let at = span.start.min(self.text.len());
        self.text.get(..at).map(|s| s.matches('\n').count() + 1)
    }

    pub(super) fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: span.as_ref().and_then(|s| self.line_of(s)),
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// The dotted key a position falls on: its table plus the `key =` of its line.
    pub(super) fn key_at(&self, pos: usize) -> Option<String> {
        let table = self.table_at(pos);
        let start = self
            .text
            .get(..pos.min(self.text.len()))?
            .rfind('\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let line = self.text[start..].lines().next().unwrap_or("");
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('[') && !k.starts_with('#'));
        match (table, key) {
            (Some(t), Some(k)) => Some(format!("{t}.{k}")),
            (None, Some(k)) => Some(k.to_string()),
            (t, None) => t,
        }
    }

    /// The table a position falls in (`[defaults]`, `[[mirror]] #2`), from the headers above it.
    fn table_at(&self, pos: usize) -> Option<String> {
        let pos = pos.min(self.text.len());
        let end = self.text[pos..]
            .find('\n')
            .map(|i| pos + i)
            .unwrap_or(self.text.len());
        let before = self.text.get(..end)?;
        let mut current = None;
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for line in before.lines() {
            match super::config_text::header_name(line) {
                Some((name, true)) => {
                    let n = counts.entry(name.clone()).or_insert(0);
                    *n += 1;
                    current = Some(format!("{name}[{n}]"));
                }
                Some((name, false)) => current = Some(name),
                None => {}
            }
        }
        current
    }
}
