//! Where each field of a configuration file is: the line of every key path
//! (`gateway.bind`, `service[1].port`, `service[0].backoff.max_ms`), so that a rule checked
//! after parsing can still point at the line that breaks it.

use std::collections::HashMap;

use gateway_core::ConfigError;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The line of every key path of one text.
pub(super) struct Lines<'a> {
    text: &'a str,
    paths: HashMap<String, usize>,
}

impl<'a> Lines<'a> {
    /// Indexes `text`; a text that does not parse has no paths (its parse error has the line).
    pub(super) fn index(text: &'a str) -> Lines<'a> {
        let mut lines = Lines { text, paths: HashMap::new() };
        if let Ok(table) = DeTable::parse(text) {
            lines.table("", table.get_ref());
        }
        lines
    }

    fn table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table {
            let path =
                if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
            let line = self.line_at(key.span().start);
            self.paths.entry(path.clone()).or_insert(line);
            self.value(&path, value);
        }
    }

    fn value(&mut self, path: &str, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Table(t) => self.table(path, t),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    let line = self.line_at(item.span().start);
                    self.paths.entry(path.clone()).or_insert(line);
                    self.value(&path, item);
                }
            }
            _ => {}
        }
    }

    /// 1-based line and column of a byte offset.
    fn at(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |i| before[i + 1..].chars().count()) + 1;
        (line, column)
    }

    fn line_at(&self, offset: usize) -> usize {
        self.at(offset).0
    }

    /// The line of `field`, or of the `[[service]]` entry it belongs to.
    pub(super) fn of(&self, field: &str) -> Option<usize> {
        self.paths.get(field).copied().or_else(|| {
            let entry = &field[..=field.find(']')?];
            self.paths.get(entry).copied()
        })
    }

    /// A TOML or serde error of this text, with its line and column.
    pub(super) fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = self.at(span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Parse { line, column, message: e.message().trim().to_owned() }
    }
}
