//! The regmirror config a conversion builds: tables of keys and `#`
//! comments, rendered as TOML text in the order the config file documents
//! (top-level notes, `[defaults]`, `[[registry]]`, `[[mirror]]`).

use std::collections::HashSet;

/// One line of a table: a key and its value, or a comment.
#[derive(Debug, Clone)]
enum Line {
    Key(String, toml::Value),
    Note(String),
}

/// One TOML table, possibly disabled (rendered commented out, with why).
#[derive(Debug, Clone, Default)]
pub struct Table {
    lines: Vec<Line>,
    disabled: Option<String>,
}

impl Table {
    /// Set `key`.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.lines.push(Line::Key(key.to_string(), value.into()));
    }

    /// Set `key` to a list of strings.
    pub fn list(&mut self, key: &str, items: &[String]) {
        let v = items.iter().cloned().map(toml::Value::String).collect();
        self.set(key, toml::Value::Array(v));
    }

    /// A `# convert:` comment: something mapped approximately or not at all.
    pub fn note(&mut self, text: impl Into<String>) {
        self.lines.push(Line::Note(text.into()));
    }

    /// Leave the whole table out, commented, saying why.
    pub fn disable(&mut self, why: impl Into<String>) {
        if self.disabled.is_none() {
            self.disabled = Some(why.into());
        }
    }

    /// True when the table sets `key`.
    pub fn has(&self, key: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Key(k, _) if k == key))
    }

    fn notes(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l, Line::Note(_)))
            .count()
            + usize::from(self.disabled.is_some())
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.disabled.is_none()
    }

    fn render(&self, header: &str, out: &mut String) {
        let off = if self.disabled.is_some() { "# " } else { "" };
        if let Some(why) = &self.disabled {
            out.push_str(&format!("# convert: left out, {why}\n"));
        }
        if !header.is_empty() {
            out.push_str(&format!("{off}{header}\n"));
        }
        for l in &self.lines {
            match l {
                Line::Key(k, v) => out.push_str(&format!("{off}{k} = {}\n", value(v))),
                Line::Note(n) => {
                    for line in n.lines() {
                        out.push_str(&format!("# convert: {line}\n"));
                    }
                }
            }
        }
        out.push('\n');
    }
}

/// A value as TOML; a string with backslashes as a literal string
/// (`'^1\.13'`), as regexes read best.
fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s.contains('\\') && !s.contains(['\'', '\n', '\r']) => {
            format!("'{s}'")
        }
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(value).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The config being built.
#[derive(Debug, Default)]
pub struct Draft {
    /// Notes about the file as a whole.
    pub top: Table,
    pub defaults: Table,
    pub registries: Vec<(String, Table)>,
    pub mirrors: Vec<Table>,
    names: HashSet<String>,
}

impl Draft {
    /// The `[[registry]]` table of `host`, added when missing.
    pub fn registry(&mut self, host: &str) -> &mut Table {
        let i = match self.registries.iter().position(|(h, _)| h == host) {
            Some(i) => i,
            None => {
                let mut t = Table::default();
                t.set("host", host);
                self.registries.push((host.to_string(), t));
                self.registries.len() - 1
            }
        };
        &mut self.registries[i].1
    }

    /// Add a mirror; one whose target another mirror already has gets a
    /// `name` of its own (default names are the target path, and must be unique).
    pub fn mirror(&mut self, target_path: &str, mut t: Table) {
        if t.disabled.is_none() && !t.has("name") && !self.names.insert(target_path.to_string()) {
            let mut n = 2;
            while !self.names.insert(format!("{target_path}-{n}")) {
                n += 1;
            }
            t.lines.insert(
                0,
                Line::Key("name".into(), format!("{target_path}-{n}").into()),
            );
        }
        self.mirrors.push(t);
    }

    /// How many `# convert:` comments (and left-out tables) the config has.
    pub fn notes(&self) -> usize {
        self.top.notes()
            + self.defaults.notes()
            + self
                .registries
                .iter()
                .map(|(_, t)| t.notes())
                .sum::<usize>()
            + self.mirrors.iter().map(Table::notes).sum::<usize>()
    }

    /// The config as TOML text, headed by `origin`.
    pub fn render(&self, origin: &str) -> String {
        let mut out = format!(
            "# {origin}\n# `# convert:` comments mark settings that map approximately or not \
             at all.\n\n"
        );
        if !self.top.is_empty() {
            self.top.render("", &mut out);
        }
        if self.mirrors.iter().all(|m| m.disabled.is_some()) {
            // Top-level keys come before the first table.
            out.push_str("allow_empty = true\n\n");
        }
        if !self.defaults.is_empty() {
            self.defaults.render("[defaults]", &mut out);
        }
        for (_, t) in &self.registries {
            t.render("[[registry]]", &mut out);
        }
        for t in &self.mirrors {
            t.render("[[mirror]]", &mut out);
        }
        out
    }
}
