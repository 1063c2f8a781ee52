//! A tree written back as a preset file: every section, every value, and
//! its source as the comment above it — a whole configuration a user can
//! edit and pass back with `--config`.

use toml::{Table, Value};

use crate::source::join;
use crate::tree::Tree;

/// Comment lines are wrapped at this width.
const WIDTH: usize = 78;

impl Tree {
    /// The whole configuration as TOML, sources as comments; parsing it
    /// back gives the same values and sources.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("name = {}\n", Value::String(self.name().into())));
        if !self.description().is_empty() {
            let d = Value::String(self.description().into());
            out.push_str(&format!("description = {d}\n"));
        }
        for leaf in self.leaves() {
            if !leaf.path.contains('.') {
                self.emit_leaf(&mut out, &leaf.path, leaf.value);
            }
        }
        self.emit_tables(&mut out, &self.table_root(), "");
        out
    }

    fn table_root(&self) -> Table {
        let mut t = Table::new();
        for leaf in self.leaves() {
            insert(&mut t, &leaf.path, leaf.value.clone());
        }
        t
    }

    fn emit_tables(&self, out: &mut String, t: &Table, prefix: &str) {
        for (k, v) in t {
            let Value::Table(sub) = v else { continue };
            let path = join(prefix, k);
            if sub.values().any(|v| !v.is_table()) {
                out.push_str(&format!("\n[{path}]\n"));
                for (k2, v2) in sub {
                    if !v2.is_table() {
                        self.emit_leaf(out, &join(&path, k2), v2);
                    }
                }
            }
            self.emit_tables(out, sub, &path);
        }
    }

    fn emit_leaf(&self, out: &mut String, path: &str, value: &Value) {
        if let Some(src) = self.source(path).filter(|s| !s.text.is_empty()) {
            out.push_str(&wrap_comment(&src.text));
        }
        let key = path.rsplit('.').next().unwrap_or(path);
        out.push_str(&format!("{key} = {value}\n"));
    }
}

fn insert(t: &mut Table, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            t.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let sub = t
                .entry(head.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(sub) = sub {
                insert(sub, rest, v);
            }
        }
    }
}

/// `text` as `#` lines of at most [`WIDTH`] columns.
fn wrap_comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
