//! Reading a TOML document's values together with the comment block
//! written directly above each value — its source.
//!
//! Only the contiguous `#` lines right above a key count: a blank line
//! ends a block, so prose above a section header is not mistaken for the
//! source of its first value.

use std::collections::BTreeMap;

use toml::Table;

use crate::PresetError;

/// A parsed document: its values and the comment above each leaf, by
/// dotted path.
pub(crate) struct Parsed {
    pub values: Table,
    pub comments: BTreeMap<String, String>,
}

/// Parse `text` (`label` names it in errors).
pub(crate) fn parse(text: &str, label: &str) -> Result<Parsed, PresetError> {
    let bad = |e: &dyn std::fmt::Display| PresetError::Parse {
        label: label.to_string(),
        message: one_line(&e.to_string()),
    };
    let values: Table = toml::from_str(text).map_err(|e| bad(&e))?;
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e| bad(&e))?;
    let mut comments = BTreeMap::new();
    collect(doc.as_table(), "", &mut comments);
    Ok(Parsed { values, comments })
}

fn collect(table: &toml_edit::Table, prefix: &str, out: &mut BTreeMap<String, String>) {
    for (key, item) in table.iter() {
        let path = join(prefix, key);
        match item {
            toml_edit::Item::Table(sub) => collect(sub, &path, out),
            toml_edit::Item::Value(_) => {
                let decor = table
                    .key(key)
                    .and_then(|k| k.leaf_decor().prefix())
                    .and_then(|raw| raw.as_str());
                if let Some(text) = decor.and_then(comment_block) {
                    out.insert(path, text);
                }
            }
            _ => {}
        }
    }
}

/// `a.b` from `a` and `b` (just `b` at the top).
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The last block of `#` lines of a key's prefix, as one line of text.
fn comment_block(prefix: &str) -> Option<String> {
    let mut block: Vec<&str> = Vec::new();
    for line in prefix.lines() {
        let line = line.trim();
        match line.strip_prefix('#') {
            Some(c) => block.push(c.trim()),
            None => block.clear(),
        }
    }
    let text = block.join(" ").trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A multi-line message (a parser's, with its caret drawing) as one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| "|^ ".contains(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_line_ends_a_source_block() {
        let p = parse(
            "# about the file\n\n[a]\n# source: one\n# and two\nx = 1\n\n# prose\n\n# assumption: why\ny = 2\nz = 3\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.comments["a.x"], "source: one and two");
        assert_eq!(p.comments["a.y"], "assumption: why");
        assert!(!p.comments.contains_key("a.z"));
        assert_eq!(p.values["a"]["y"].as_integer(), Some(2));
    }

    #[test]
    fn parse_errors_are_one_line() {
        let Err(PresetError::Parse { message, .. }) = parse("[a]\nx = = 1\n", "f.toml") else {
            panic!("accepted a broken file");
        };
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }
}
