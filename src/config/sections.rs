//! Every type error of a configuration file at once. Deserializing a whole file stops at its
//! first bad value, so a file with three mistakes would take three runs of `check-config` to
//! fix. When the whole does not deserialize, each top-level key is deserialized alone: the file
//! with every line that belongs to another top-level key blanked (so lines and columns stay
//! those of the file), each error at its own line.

use super::BallastConfig;
use crate::toml_lines::line_col;

/// One type error: (line, column, message), 1-based.
pub type Located = (Option<usize>, Option<usize>, String);

/// The top-level key each line belongs to (`None`: blank lines and comments before any key).
fn owners(text: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut table: Option<String> = None;
    let mut root_key: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(header) = t.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            table = Some(first_segment(header));
            out.push(table.clone());
            continue;
        }
        if table.is_some() {
            out.push(table.clone());
            continue;
        }
        // At the root: `key = value` starts a key; other lines continue the one before.
        if t.is_empty() || t.starts_with('#') {
            out.push(root_key.clone());
            continue;
        }
        if let Some((key, _)) = t.split_once('=')
            && is_key(key.trim())
        {
            root_key = Some(first_segment(key.trim()));
        }
        out.push(root_key.clone());
    }
    out
}

/// Whether `s` looks like a TOML key (bare or quoted, possibly dotted).
fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' '))
}

/// The first segment of a dotted key or header (`tools."a.b"` → `tools`).
fn first_segment(s: &str) -> String {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('"') {
        return rest.split('"').next().unwrap_or_default().to_string();
    }
    if let Some(rest) = s.strip_prefix('\'') {
        return rest.split('\'').next().unwrap_or_default().to_string();
    }
    s.split(['.', ']', ' '])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The type errors of `text`, one per top-level key that has one; empty when the per-key pass
/// finds none it can place (the caller then reports the whole file's own first error).
pub fn type_errors(text: &str) -> Vec<Located> {
    let owners = owners(text);
    let mut keys: Vec<&String> = owners.iter().flatten().collect();
    keys.sort();
    keys.dedup();
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<Located> = Vec::new();
    for key in keys {
        let only: String = lines
            .iter()
            .zip(&owners)
            .map(|(line, owner)| {
                if owner.as_ref() == Some(key) {
                    *line
                } else {
                    ""
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        // A slice that is not valid TOML by itself (the line scan above misjudged a
        // multi-line value) says nothing about types: skipped.
        if toml::from_str::<toml::Table>(&only).is_err() {
            continue;
        }
        if let Err(e) = toml::from_str::<BallastConfig>(&only) {
            let pos = e.span().map(|s| line_col(&only, s.start));
            let message = match e.message().trim() {
                "" => "not valid here".to_string(),
                m => m.to_string(),
            };
            let found = (pos.map(|p| p.0), pos.map(|p| p.1), message);
            if !out.contains(&found) {
                out.push(found);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_mistakes_in_three_sections_are_three_errors_at_their_lines() {
        let text = "catalog = 7\n\n[worker]\nsnapshot_every_events = \"many\"\n\n\
                    [log]\nbackend = \"embedded\"\npartitions = \"eight\"\n\n[vault]\nmaster_key_file = 3\n";
        assert!(toml::from_str::<BallastConfig>(text).is_err());
        let errors = type_errors(text);
        let lines: Vec<Option<usize>> = errors.iter().map(|e| e.0).collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        for line in [1, 4, 8, 11] {
            assert!(lines.contains(&Some(line)), "line {line}: {errors:?}");
        }
    }

    #[test]
    fn owners_follow_headers_and_root_keys() {
        let text = "# c\ncatalog = \"c.json\"\npolicies = [\n  \"x\",\n]\n[tools.\"a.b\"]\nx = 1\n[[mcp]]\nname = \"m\"\n";
        let o = owners(text);
        let want = [
            None,
            Some("catalog"),
            Some("policies"),
            Some("policies"),
            Some("policies"),
            Some("tools"),
            Some("tools"),
            Some("mcp"),
            Some("mcp"),
        ];
        let got: Vec<Option<&str>> = o.iter().map(|x| x.as_deref()).collect();
        assert_eq!(got, want);
    }
}
