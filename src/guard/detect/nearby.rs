//! What the text around a candidate says about it: what it is glued to, the words before and
//! after it, whether an AWS key id or a `tel:` scheme is near. Used by the checks of
//! `detect.rs` that cannot decide from the candidate alone.

use std::sync::LazyLock;

use regex::Regex;

/// Zero-width characters that may sit between the digits of a value without being seen:
/// ZERO WIDTH SPACE, NON-JOINER, JOINER, WORD JOINER and the BOM used as one.
pub const ZERO_WIDTH: [char; 5] = ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'];

/// The character before `start` and the one after `end`.
pub fn neighbours(text: &str, start: usize, end: usize) -> (Option<char>, Option<char>) {
    (
        text.get(..start).and_then(|s| s.chars().next_back()),
        text.get(end..).and_then(|s| s.chars().next()),
    )
}

/// The character two places before `start` and two places after `end`.
fn second_neighbours(text: &str, start: usize, end: usize) -> (Option<char>, Option<char>) {
    (
        text.get(..start).and_then(|s| s.chars().rev().nth(1)),
        text.get(end..).and_then(|s| s.chars().nth(1)),
    )
}

/// How a card-like candidate meets the text around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glue {
    /// Space, punctuation or the text's ends on both sides.
    Free,
    /// Joined to a word by `_`, `/` or `-` (`card_4111…`, `ref/4111…`, `x-4111…`).
    Word,
    /// Part of a longer token: a letter or digit right beside it, a decimal point, an address,
    /// or a joiner with more digits beyond it.
    Tight,
}

pub fn card_glue(text: &str, start: usize, end: usize) -> Glue {
    let (before, after) = neighbours(text, start, end);
    let (before2, after2) = second_neighbours(text, start, end);
    let joiner = |c: char| matches!(c, '_' | '/' | '-');
    let side = |c: Option<char>, beyond: Option<char>, after: bool| match c {
        None => Glue::Free,
        Some(c) if c.is_alphanumeric() || c == '@' => Glue::Tight,
        // "0.4111…" is a decimal; a full stop after a value ends its sentence.
        Some('.') if !after || beyond.is_some_and(char::is_alphanumeric) => Glue::Tight,
        Some(c) if joiner(c) => match beyond {
            Some(b) if b.is_numeric() => Glue::Tight,
            Some(b) if b.is_alphabetic() => Glue::Word,
            _ => Glue::Free,
        },
        Some(_) => Glue::Free,
    };
    match (side(before, before2, false), side(after, after2, true)) {
        (Glue::Tight, _) | (_, Glue::Tight) => Glue::Tight,
        (Glue::Word, _) | (_, Glue::Word) => Glue::Word,
        _ => Glue::Free,
    }
}

/// Right after a `tel:` scheme (any case).
pub fn after_tel_scheme(text: &str, start: usize) -> bool {
    start >= 4
        && text
            .get(start - 4..start)
            .is_some_and(|s| s.eq_ignore_ascii_case("tel:"))
}

/// Words that say the number after them is a phone number.
const PHONE_WORDS: &[&str] = &[
    "phone",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "fax",
    "call",
    "sms",
    "text",
    "whatsapp",
    "contact",
];

/// Words that say a number is something else: an id, an amount, a time.
const NUMBER_WORDS: &[&str] = &[
    "order",
    "orders",
    "invoice",
    "inv",
    "ref",
    "reference",
    "id",
    "no",
    "nr",
    "num",
    "number",
    "account",
    "acct",
    "ticket",
    "case",
    "tracking",
    "sku",
    "serial",
    "isbn",
    "amount",
    "total",
    "price",
    "cost",
    "balance",
    "sum",
    "ts",
    "time",
    "timestamp",
    "epoch",
    "unix",
    "seconds",
    "created",
    "updated",
    "modified",
    "expires",
    "expiry",
    "exp",
    "iat",
    "nbf",
    "date",
    "build",
    "version",
    "seq",
    "offset",
    "count",
    "size",
    "bytes",
];

/// Units after a number that make it a quantity.
const UNIT_WORDS: &[&str] = &[
    "cents", "usd", "eur", "gbp", "ms", "s", "sec", "secs", "seconds", "bytes", "kb", "mb",
    "items", "units", "points", "times",
];

/// The last `n` words of the (at most 48 bytes of) text before `start`, lower-cased.
fn words_before(text: &str, start: usize, n: usize) -> Vec<String> {
    let mut from = start.saturating_sub(48);
    while from > 0 && !text.is_char_boundary(from) {
        from -= 1;
    }
    let words: Vec<String> = text
        .get(from..start)
        .unwrap_or_default()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let from = words.len().saturating_sub(n);
    words.get(from..).unwrap_or_default().to_vec()
}

/// The first word after `end`, lower-cased.
fn word_after(text: &str, end: usize) -> Option<String> {
    text.get(end..)?
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|_| {
            // Only the word right after (separated by spaces), not one across punctuation.
            text.get(end..)
                .and_then(|s| s.chars().find(|c| !c.is_whitespace()))
                .is_some_and(char::is_alphanumeric)
        })
}

/// Whether the words around a bare number say it is an id, an amount or a time rather than a
/// phone number: a phone word in the two words before wins; otherwise a number word among them,
/// a unit right after, or a `#`, `$`, `€`, `£` or `¥` right before says it is not a phone.
pub fn number_context(text: &str, start: usize, end: usize) -> bool {
    let before = words_before(text, start, 2);
    if before.iter().any(|w| PHONE_WORDS.contains(&w.as_str())) {
        return false;
    }
    let sign = text
        .get(..start)
        .and_then(|s| s.trim_end().chars().next_back())
        .is_some_and(|c| matches!(c, '#' | '$' | '€' | '£' | '¥'));
    sign || before.iter().any(|w| NUMBER_WORDS.contains(&w.as_str()))
        || word_after(text, end).is_some_and(|w| UNIT_WORDS.contains(&w.as_str()))
}

/// An AWS access key id, or the words naming a secret access key.
static AWS_CONTEXT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i:secret[ _\-]?access[ _\-]?key)|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b").ok()
});

/// How far (in bytes, either side) an access key id or the words may be from a secret.
const AWS_WINDOW: usize = 256;

/// An AWS access key id or the words "secret access key" within 256 bytes of the candidate.
pub fn near_aws_key_id(text: &str, start: usize, end: usize) -> bool {
    let mut lo = start.saturating_sub(AWS_WINDOW);
    while lo > 0 && !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = end.saturating_add(AWS_WINDOW).min(text.len());
    while hi < text.len() && !text.is_char_boundary(hi) {
        hi += 1;
    }
    let Some(re) = AWS_CONTEXT.as_ref() else {
        return false;
    };
    text.get(lo..hi).is_some_and(|w| re.is_match(w))
}

/// A token standing on its own: what is before and after it delimits it (space, quotes, the
/// separators of config lines, CSV and JSON), so it is not a slice of a longer token.
pub fn standalone_token(text: &str, start: usize, end: usize) -> bool {
    let (before, after) = neighbours(text, start, end);
    let (_, after2) = second_neighbours(text, start, end);
    let opens = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | '=' | ':' | ',' | ';' | '(' | '[' | '{' | '<' | '>' | '|'
            )
    };
    let closes = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | ',' | ';' | ')' | ']' | '}' | '<' | '|'
            )
    };
    let before_ok = before.is_none_or(opens);
    let after_ok = match after {
        None => true,
        Some('.') => !after2.is_some_and(char::is_alphanumeric),
        Some(c) => closes(c),
    };
    before_ok && after_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glue_of_a_card_candidate() {
        let at = |text: &str, value: &str| {
            let start = text.find(value).expect("value in text");
            card_glue(text, start, start + value.len())
        };
        assert_eq!(at("pay 4111 now", "4111"), Glue::Free);
        assert_eq!(at("card_4111.", "4111"), Glue::Word);
        assert_eq!(at("ref/4111/x", "4111"), Glue::Word);
        assert_eq!(at("A4111", "4111"), Glue::Tight);
        assert_eq!(at("12-4111", "4111"), Glue::Tight);
        assert_eq!(at("0.4111", "4111"), Glue::Tight);
        assert_eq!(at("4111.5", "4111"), Glue::Tight);
    }

    #[test]
    fn words_around_a_number() {
        let at = |text: &str, value: &str| {
            let start = text.find(value).expect("value in text");
            number_context(text, start, start + value.len())
        };
        assert!(at("order 4155552671", "4155552671"));
        assert!(at(r#"{"ts": 4155552671}"#, "4155552671"));
        assert!(at("$4155552671", "4155552671"));
        assert!(at("4155552671 cents", "4155552671"));
        assert!(!at("phone no 4155552671", "4155552671"));
        assert!(!at("call me at 4155552671.", "4155552671"));
        assert!(!at("4155552671", "4155552671"));
        assert!(after_tel_scheme("tel:+1", 4) && after_tel_scheme("TEL:1", 4));
        assert!(!after_tel_scheme("hotel+1", 4));
    }
}
