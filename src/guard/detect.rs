//! The detection rules: a pattern that finds candidates, and a check that looks at a candidate
//! and the text around it (a checksum, a country's IBAN length, whether a number is glued to an
//! identifier, whether it is really a date or a list). What the text around a candidate says
//! (glue, nearby words, an AWS key id near) is in `nearby.rs`.
//!
//! Rules decided here, with the cases in `corpus.rs`:
//! - A card number glued to a word by `_`, `/` or `-` (`card_4111…`, `ref/4111-…`) is a card
//!   when it starts like one of the major networks' numbers (2221–2720, 30 and 34–39, 4, 5, 6):
//!   a Luhn-valid id such as `session_7111…` is not. Glued to a letter or digit, or after a
//!   decimal point, it is part of another token. Zero-width characters (U+200B, U+200C, U+200D,
//!   U+2060, U+FEFF) between its digits are part of the value.
//! - Ten digits with no separator are a North American phone number when the area code and
//!   exchange are valid (first digit 2–9, no N11 code, no 9 as the area code's middle digit),
//!   the digits do not read as a date (`20261201…`), and the words around do not make them
//!   an id, an amount or a time (`order`, `id`, `total`, `ts`, `created`, … before; `cents`,
//!   `ms`, … after; `#`, `$` before) — unless a phone word (`phone`, `call`, `mobile`, …) comes
//!   first. Current epoch seconds start with 1, which no area code does.
//! - After `tel:`, any 7 to 15 digits are a phone number.
//! - An AWS secret access key is 40 characters of base64 (A–Z, a–z, 0–9, `/`, `+`) standing
//!   alone, with upper and lower case and a digit, `/` or `+`, not hex only (a git sha or SHA-1
//!   is hex), within 256 bytes of an access key id (`AKIA…`, `ASIA…`) or the words "secret
//!   access key"; after a label (`aws_secret_access_key=`, `"SecretAccessKey":`) the labelled
//!   rule takes it, whatever it looks like.
//! - A private key block without its END line runs from its BEGIN line over its headers and
//!   base64 lines to the first blank line (one blank line right after the headers or the BEGIN
//!   line belongs to the block) or the end of the text; line ends may be escaped (`\n`).
//! - E-mail addresses may have letters, marks and digits of any script in both parts.

mod nearby;

use nearby::Glue;

/// A check on a candidate `text[start..end]`, with the whole text for context: the span to
/// take (the candidate, or a part of it), or `None`.
/// A vault token (`vault::token`): `[pii:KIND:CODE]`, CODE 16 letters `a`–`p`. Detection
/// leaves tokens alone.
pub const TOKEN_PATTERN: &str = r"\[pii:([a-z_]{1,32}):([a-p]{16})\]";

pub type Check = fn(&str, usize, usize) -> Option<(usize, usize)>;

pub struct BuiltinRule {
    pub kind: &'static str,
    pub pattern: &'static str,
    pub check: Check,
    pub group: usize,
}

pub fn always(_: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    Some((start, end))
}

/// A sentence's full stop after a value is not part of it.
fn no_trailing_dot(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let value = text.get(start..end)?;
    let kept = value.trim_end_matches('.').len();
    (kept > 0).then_some((start, start + kept))
}

fn keep(ok: bool, start: usize, end: usize) -> Option<(usize, usize)> {
    ok.then_some((start, end))
}

/// The value of a digit, ASCII or full-width.
fn digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '０'..='９' => Some(c as u32 - '０' as u32),
        _ => None,
    }
}

/// The Luhn checksum: catches most digit strings that merely look like card numbers.
pub fn luhn(candidate: &str) -> bool {
    let digits: Vec<u32> = candidate.chars().filter_map(digit).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// IBAN lengths by country (the SWIFT registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// ISO 13616: the country's length, then the country code and check digits moved to the end,
/// letters as numbers, the whole mod 97 equals 1. Any case, spaces ignored.
pub fn iban_valid(candidate: &str) -> bool {
    let s: String = candidate
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let Some(country) = s.get(..2) else {
        return false;
    };
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if s.len() != len || !s.is_ascii() {
        return false;
    }
    let (head, tail) = s.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        if v >= 10 {
            rem = (rem * 100 + v) % 97;
        } else {
            rem = (rem * 10 + v) % 97;
        }
    }
    rem == 1
}

/// Letters, digits or joiners right before or after: the candidate is part of an identifier.
fn glued(text: &str, start: usize, end: usize) -> bool {
    let joins = |c: char| c.is_alphanumeric() || matches!(c, '_' | '/' | '-' | '.' | '@');
    let before = text.get(..start).and_then(|s| s.chars().next_back());
    let after = text.get(end..).and_then(|s| s.chars().next());
    // A sentence may end right after a number: "call 020 7946 0958." is not glued.
    let after_glues = match after {
        Some('.') => text
            .get(end + 1..)
            .and_then(|s| s.chars().next())
            .is_some_and(|c| c.is_alphanumeric()),
        Some(c) => joins(c),
        None => false,
    };
    before.is_some_and(joins) || after_glues
}

/// From a candidate's start, exactly its country's length of letters and digits (single
/// spaces between), mod-97 checked.
fn iban_check(text: &str, start: usize, _end: usize) -> Option<(usize, usize)> {
    let rest = text.get(start..)?;
    let country: String = rest
        .chars()
        .take(2)
        .collect::<String>()
        .to_ascii_uppercase();
    let &(_, len) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country)?;
    let mut taken = 0;
    let mut end = start;
    let mut last_space = false;
    for (i, c) in rest.char_indices() {
        if taken == len {
            break;
        }
        if c == ' ' && !last_space && taken >= 4 {
            last_space = true;
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            return None;
        }
        last_space = false;
        taken += 1;
        end = start + i + c.len_utf8();
    }
    if taken != len || glued(text, start, end) {
        return None;
    }
    keep(text.get(start..end).is_some_and(iban_valid), start, end)
}

/// Separator-split groups of digits.
fn groups(candidate: &str) -> Vec<usize> {
    candidate
        .split(|c: char| digit(c).is_none())
        .filter(|g| !g.is_empty())
        .map(|g| g.chars().count())
        .collect()
}

/// The first digits of a major network's card: Mastercard 2221–2720 and 51–55, Diners 30, 36,
/// 38, 39, Amex 34 and 37, JCB 35, Visa 4, Maestro, Discover and UnionPay 5 and 6.
fn card_prefix(c: &str) -> bool {
    let d: Vec<u32> = c.chars().filter_map(digit).take(4).collect();
    match *d.as_slice() {
        [4, ..] | [5, ..] | [6, ..] => true,
        [3, b, ..] => !matches!(b, 1..=3),
        [2, b, c, e] => (2221..=2720).contains(&(2000 + b * 100 + c * 10 + e)),
        _ => false,
    }
}

fn without_zero_width(c: &str) -> String {
    c.chars()
        .filter(|x| !nearby::ZERO_WIDTH.contains(x))
        .collect()
}

fn card_check(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let c = text.get(start..end)?;
    // `+49…` is a phone number whatever its checksum.
    let plus = text.get(..start).and_then(|s| s.chars().next_back()) == Some('+');
    if plus || !luhn(c) {
        return None;
    }
    let glue_ok = match nearby::card_glue(text, start, end) {
        Glue::Free => true,
        Glue::Word => card_prefix(c),
        Glue::Tight => false,
    };
    if !glue_ok {
        return None;
    }
    // Cards print as one run, or in groups of four to six (Amex 4-6-5, Diners 4-6-4);
    // "1 2 3 4 …" is a list, whatever its checksum. Zero-width characters split nothing.
    let g = groups(&without_zero_width(c));
    keep(
        g.len() == 1 || g.iter().all(|n| (4..=6).contains(n)),
        start,
        end,
    )
}

fn looks_like_date(c: &str) -> bool {
    let g = groups(c);
    let seps: Vec<char> = c.chars().filter(|x| digit(*x).is_none()).collect();
    let date_sep = seps.iter().all(|s| matches!(s, '-' | '/' | '.'));
    date_sep
        && match *g.as_slice() {
            [a, b, c] => (a == 4 && b <= 2 && c <= 2) || (a <= 2 && b <= 2 && (c == 4 || c == 2)),
            _ => false,
        }
}

fn phone_check(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    keep(is_phone(text, start, end), start, end)
}

fn is_phone(text: &str, start: usize, end: usize) -> bool {
    let Some(c) = text.get(start..end) else {
        return false;
    };
    let digits = c.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) || glued(text, start, end) {
        return false;
    }
    // A `tel:` URI holds a phone number, whatever its grouping.
    if nearby::after_tel_scheme(text, start) {
        return true;
    }
    // A time (10:20), a date, a timestamp, an IP address or a version is not a phone.
    let before = text.get(..start).and_then(|s| s.chars().next_back());
    let after = text.get(end..).and_then(|s| s.chars().next());
    if matches!(before, Some(':')) || matches!(after, Some(':')) || looks_like_date(c) {
        return false;
    }
    let g = groups(c);
    let dotted = c.chars().filter(|x| !x.is_ascii_digit()).all(|x| x == '.');
    if dotted && g.len() == 4 && g.iter().all(|n| *n <= 3) {
        return false;
    }
    let international = c.starts_with('+') || c.starts_with("00");
    if international {
        return (8..=15).contains(&digits);
    }
    if c.contains('(') {
        return c.contains(')') && (7..=11).contains(&digits);
    }
    // A list of short numbers ("10 20 30 40") is not a phone — unless it is the French 0X XX XX
    // XX XX; a national number starts with its trunk prefix 0, or is the North American 3-3-4.
    if g.iter().all(|n| *n <= 2) {
        return c.starts_with('0') && digits == 10 && g.len() == 5;
    }
    if g.len() == 1 && digits == 10 {
        return nanp_valid(c) && !reads_as_date(c) && !nearby::number_context(text, start, end);
    }
    let nanp = g == [3, 3, 4] && !c.contains(' ');
    let national = c.starts_with('0') && (9..=11).contains(&digits) && g.len() >= 2;
    nanp || national
}

/// A North American number's area code and exchange: neither starts with 0 or 1, neither is an
/// N11 service code, and no area code has 9 in the middle (reserved for expansion).
fn nanp_valid(c: &str) -> bool {
    let d: Vec<u32> = c.chars().filter_map(digit).collect();
    match *d.as_slice() {
        [a, b, c, e, f, g, ..] => {
            a >= 2 && b != 9 && !(b == 1 && c == 1) && e >= 2 && !(f == 1 && g == 1)
        }
        _ => false,
    }
}

/// Digits that begin with a date (19xx or 20xx, a month, a day): `2026120110` is a time.
fn reads_as_date(c: &str) -> bool {
    let d: Vec<u32> = c.chars().filter_map(digit).collect();
    match *d.as_slice() {
        [y1, y2, _, _, m1, m2, d1, d2, ..] => {
            let month = m1 * 10 + m2;
            let day = d1 * 10 + d2;
            matches!((y1, y2), (1, 9) | (2, 0))
                && (1..=12).contains(&month)
                && (1..=31).contains(&day)
        }
        _ => false,
    }
}

/// A standalone 40-character base64 token near an AWS access key id (see the module's rules).
fn aws_secret_check(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let c = text.get(start..end)?;
    let ok = c.len() == 40
        && !c.chars().all(|x| x.is_ascii_hexdigit())
        && c.chars().any(|x| x.is_ascii_uppercase())
        && c.chars().any(|x| x.is_ascii_lowercase())
        && c.chars()
            .any(|x| x.is_ascii_digit() || x == '/' || x == '+')
        && nearby::standalone_token(text, start, end)
        && nearby::near_aws_key_id(text, start, end);
    keep(ok, start, end)
}

fn ipv4_check(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let ok = text.get(start..end).is_some_and(|c| {
        c.split('.').all(|o| {
            o.parse::<u16>().is_ok_and(|n| n <= 255) && !(o.len() > 1 && o.starts_with('0'))
        })
    }) && !glued(text, start, end);
    keep(ok, start, end)
}

fn ipv6_check(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let ok = text
        .get(start..end)
        .is_some_and(|c| c.parse::<std::net::Ipv6Addr>().is_ok());
    keep(ok, start, end)
}

/// The built-in rules, in the order they claim text.
pub fn builtin(ip_addresses: bool) -> Vec<BuiltinRule> {
    let mut rules = vec![
        BuiltinRule {
            kind: "private_key",
            // Up to its END line; without one, its headers and base64 lines up to a blank line
            // or the end (line ends plain or escaped as in a JSON text).
            pattern: concat!(
                r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----(?:",
                r"[\s\S]*?-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----",
                r"|(?:(?:\r?\n|\\r\\n|\\n)[A-Za-z][A-Za-z0-9\-]*: [^\r\n\\]*)*",
                r"(?:(?:\r?\n|\\r\\n|\\n){1,2}[A-Za-z0-9+/=]+",
                r"(?:(?:\r?\n|\\r\\n|\\n)[A-Za-z0-9+/=]+)*)?",
                r")",
            ),
            check: always,
            group: 0,
        },
        BuiltinRule {
            kind: "jwt",
            pattern: r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            check: always,
            group: 0,
        },
        BuiltinRule {
            kind: "bearer_token",
            pattern: r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{16,}=*",
            check: no_trailing_dot,
            group: 0,
        },
        BuiltinRule {
            kind: "api_key",
            pattern: concat!(
                r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
                r"|\bsk-(?:proj-|ant-(?:api\d{2}-)?)?[A-Za-z0-9_\-]{20,}\b",
                r"|\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
                r"|\bAIza[0-9A-Za-z_\-]{35}\b",
                r"|\bya29\.[0-9A-Za-z_\-]{20,}",
                r"|\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b",
                r"|\bglpat-[A-Za-z0-9_\-]{20,}\b",
                r"|\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
                r"|\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}\b",
                r"|\bnpm_[A-Za-z0-9]{36}\b",
                r"|\bSK[0-9a-f]{32}\b",
                r"|\bhf_[A-Za-z0-9]{30,}\b",
                r"|(?i:AccountKey=)[A-Za-z0-9+/]{40,}={0,2}",
            ),
            check: always,
            group: 0,
        },
        BuiltinRule {
            kind: "secret",
            // The label stays readable; the value (one of the three groups) goes.
            pattern: r#"(?i)\b(?:password|passwd|passphrase|pwd|pass|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|private[_-]?key|aws_secret_access_key|secret[_-]?access[_-]?key|aws[_-]?secret[_-]?key)["']?\s*[:=]\s*(?:"([^"]{1,200})"|'([^']{1,200})'|([^\s,;"'&<>]{1,200}))"#,
            check: always,
            group: 1,
        },
        BuiltinRule {
            kind: "secret",
            // An AWS secret access key with no label: checked for its shape and a key id near.
            pattern: r"[A-Za-z0-9/+]{40,}",
            check: aws_secret_check,
            group: 0,
        },
        BuiltinRule {
            kind: "email",
            // Letters, marks and digits of any script (jörg@bücher.de, user@例え.jp); the local
            // part may hold an apostrophe (o'neil@…); a quote before it is not taken (a match
            // starts at a word boundary). A punycode top-level domain (xn--…) too.
            pattern: concat!(
                r"\b[\p{L}\p{M}\p{N}._%+\-']+@[\p{L}\p{M}\p{N}.\-]+",
                r"\.(?:[\p{L}\p{M}]{2,}|(?i:xn--[a-z0-9\-]+))\b"
            ),
            check: always,
            group: 0,
        },
        BuiltinRule {
            kind: "iban",
            pattern: r"(?i)\b[A-Z]{2}[0-9]{2}[ ]?[A-Z0-9]",
            check: iban_check,
            group: 0,
        },
        BuiltinRule {
            kind: "card_number",
            // Digits (ASCII or full-width) in groups joined by spaces of any kind, dots,
            // dashes, underscores or slashes, with zero-width characters anywhere between.
            pattern: concat!(
                r"[0-9０-９](?:[\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}]{0,4}",
                r"[ \u{00A0}\u{2007}\u{2009}\u{202F}\u{3000}._/\-]?",
                r"[\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}]{0,4}[0-9０-９]){12,18}"
            ),
            check: card_check,
            group: 0,
        },
        BuiltinRule {
            kind: "phone",
            // A permissive candidate — an optional + or 00, digits and brackets joined by single
            // spaces, dots or dashes — that the check narrows down.
            pattern: r"\+?(?:\(\d{1,4}\)|\d{1,6})(?:[ \u{00A0}.\-]?(?:\(\d{1,5}\)|\d{1,8})){1,7}\b",
            check: phone_check,
            group: 0,
        },
    ];
    if ip_addresses {
        rules.push(BuiltinRule {
            kind: "ip_address",
            pattern: r"\b\d{1,3}(?:\.\d{1,3}){3}\b",
            check: ipv4_check,
            group: 0,
        });
        rules.push(BuiltinRule {
            kind: "ip_address",
            pattern: r"(?i)\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b",
            check: ipv6_check,
            group: 0,
        });
    }
    rules
}
