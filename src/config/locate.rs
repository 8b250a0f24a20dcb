//! Where a key of a TOML document is: a dotted path (`planners.general.base_url`,
//! `control.routing.rules.0.profile`) to a line and column, for errors that point at the line.

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

#[cfg(test)]
mod tests {
    use super::*;

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
