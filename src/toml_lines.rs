//! Where a key of a TOML document is: a dotted path (`planners.general.base_url`,
//! `control.routing.rules.0.profile`) to a line and column, for errors that point at the line;
//! and the floats TOML allows but no setting means (`nan`, `inf`).

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The line and column of the deepest part of `path` present in the document: the value when
/// the key exists, else the nearest table that should hold it.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut best = None;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let next = match seg.parse::<usize>() {
            Ok(i) => item.get(i),
            Err(_) => item.get(seg),
        };
        match next {
            Some(found) => {
                if let Some(span) = found.span() {
                    best = Some(span.start);
                }
                item = found;
            }
            None => break,
        }
    }
    best.map(|offset| line_col(text, offset))
}

/// Every `nan`, `inf` or `-inf` in the document: its dotted path, line and column. TOML
/// allows them; no setting of Ballast means anything by them.
pub fn non_finite(text: &str) -> Vec<(String, usize, usize)> {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk_item(doc.as_item(), String::new(), text, &mut out);
    out
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

fn walk_item(
    item: &toml_edit::Item,
    path: String,
    text: &str,
    out: &mut Vec<(String, usize, usize)>,
) {
    match item {
        toml_edit::Item::Value(v) => walk_value(v, path, text, out),
        toml_edit::Item::Table(t) => {
            for (k, v) in t.iter() {
                walk_item(v, join(&path, k), text, out);
            }
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                for (k, v) in t.iter() {
                    walk_item(v, join(&join(&path, &i.to_string()), k), text, out);
                }
            }
        }
        toml_edit::Item::None => {}
    }
}

fn walk_value(
    v: &toml_edit::Value,
    path: String,
    text: &str,
    out: &mut Vec<(String, usize, usize)>,
) {
    match v {
        toml_edit::Value::Float(f) if !f.value().is_finite() => {
            let (line, col) = v.span().map_or((0, 0), |s| line_col(text, s.start));
            out.push((path, line, col));
        }
        toml_edit::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk_value(x, join(&path, &i.to_string()), text, out);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, x) in t.iter() {
                walk_value(x, join(&path, k), text, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinities_are_found_at_their_line() {
        let doc =
            "a = 1.0\n[risk]\nconfirm_at = nan\nlist = [1.0, -inf]\n[[r]]\nx = { y = +inf }\n";
        let found = non_finite(doc);
        assert_eq!(
            found,
            vec![
                ("risk.confirm_at".to_string(), 3, 14),
                ("risk.list.1".to_string(), 4, 14),
                ("r.0.x.y".to_string(), 6, 11),
            ]
        );
        assert!(non_finite("a = 1e308\n").is_empty());
    }

    const DOC: &str = "[log]\nbackend = \"embedded\"\n\n[planners.general]\nkind = \"openai\"\nbase_url = \"nope\"\n\n[[control.routing.rules]]\nname = \"a\"\nprofile = \"x\"\n";

    #[test]
    fn keys_are_found_at_their_value() {
        assert_eq!(locate(DOC, "log.backend"), Some((2, 11)));
        assert_eq!(locate(DOC, "planners.general.base_url"), Some((6, 12)));
        assert_eq!(
            locate(DOC, "control.routing.rules.0.profile"),
            Some((10, 11))
        );
    }

    #[test]
    fn a_missing_key_points_at_its_table() {
        assert_eq!(locate(DOC, "planners.general.model").map(|p| p.0), Some(4));
        assert_eq!(locate(DOC, "nothing.here"), None);
    }
}
