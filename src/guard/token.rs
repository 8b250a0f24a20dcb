//! The token that stands for a personal value in every event: `[pii:KIND:CODE]`, where CODE is
//! 16 letters `a`–`p` (64 bits of an HMAC of the value under the tenant's token key). Letters
//! only, so no detector mistakes a token for a number, and equal values of one tenant give
//! equal tokens, so grounding and loop checks still compare.

use std::sync::LazyLock;

use regex::Regex;

static TOKEN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(crate::guard::detect::TOKEN_PATTERN).ok());

/// A token in a text: its kind and its code, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAt {
    pub kind: String,
    pub code: String,
    pub start: usize,
    pub end: usize,
}

/// The token for a value of `kind` whose keyed digest is `digest`.
pub fn format(kind: &str, digest: &[u8]) -> String {
    let code: String = digest
        .iter()
        .take(8)
        .flat_map(|b| [b >> 4, b & 0x0f])
        .map(|n| char::from(b'a' + n))
        .collect();
    format!("[pii:{kind}:{code}]")
}

/// Every token in `text`, in order.
pub fn find(text: &str) -> Vec<TokenAt> {
    let Some(re) = TOKEN.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(text)
        .filter_map(|c| {
            let m = c.get(0)?;
            Some(TokenAt {
                kind: c.get(1)?.as_str().to_string(),
                code: c.get(2)?.as_str().to_string(),
                start: m.start(),
                end: m.end(),
            })
        })
        .collect()
}

/// Whether `text` is exactly one token.
pub fn is_token(text: &str) -> bool {
    find(text)
        .first()
        .is_some_and(|t| t.start == 0 && t.end == text.len())
}

/// `text` with each token replaced by `with(token)`.
pub fn replace(text: &str, mut with: impl FnMut(&TokenAt) -> String) -> String {
    let tokens = find(text);
    if tokens.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for t in tokens {
        out.push_str(text.get(last..t.start).unwrap_or_default());
        out.push_str(&with(&t));
        last = t.end;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    out
}

/// Applies `f` to every string inside a JSON value (keys kept).
pub fn map_json(value: &mut serde_json::Value, f: &mut dyn FnMut(&str) -> String) {
    match value {
        serde_json::Value::String(s) if s.contains("[pii:") => *s = f(s),
        serde_json::Value::Array(items) => {
            for v in items {
                map_json(v, f);
            }
        }
        serde_json::Value::Object(map) => {
            for (_, v) in map.iter_mut() {
                map_json(v, f);
            }
        }
        _ => {}
    }
}

/// A well-formed stand-in for a value of `kind`, for checks (a schema) that look at the shape of
/// a value the engine only holds as a token.
pub fn sample(kind: &str) -> &'static str {
    match kind {
        "email" => "user@example.com",
        "phone" => "+441234567890",
        "card_number" => "4111111111111111",
        "iban" => "GB82WEST12345698765432",
        "ip_address" => "192.0.2.1",
        _ => "redacted",
    }
}

/// The view of a text: each token as `[REDACTED:kind]`.
pub fn mask(text: &str) -> String {
    replace(text, |t| format!("[REDACTED:{}]", t.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_letters_found_and_masked() {
        let t = format(
            "email",
            &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xff],
        );
        assert_eq!(t, "[pii:email:abcdefghijklmnop]");
        assert!(is_token(&t));
        let text = format!("write to {t} or {t}.");
        assert_eq!(find(&text).len(), 2);
        assert_eq!(
            mask(&text),
            "write to [REDACTED:email] or [REDACTED:email]."
        );
        assert!(!is_token("[pii:email:abc]"));
        let (_, found) = crate::guard::Redactor::builtin().redact(&text);
        assert!(found.is_empty(), "a token is never taken for personal data");
        let labelled = format!("password={t} and secret: {t}");
        let (_, found) = crate::guard::Redactor::builtin().redact(&labelled);
        assert!(found.is_empty(), "nor is a labelled one: {found:?}");
    }
}
