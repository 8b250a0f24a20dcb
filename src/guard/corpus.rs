//! The detection corpus: values that must be found (with their kind) and texts that must be left
//! alone. The unit tests below run every entry; the PII integration tests seed turns with the
//! positives and search every surface for them.

/// (kind, value): each must be found, as that kind, wherever it appears in a sentence.
pub const CORPUS: &[(&str, &str)] = &[
    // E-mail addresses.
    ("email", "jane.doe+orders@example.co.uk"),
    ("email", "j_smith@mail.example.org"),
    ("email", "ANNA.MUELLER@BEISPIEL.DE"),
    ("email", "o'neil@example.ie"),
    ("email", "x@y.io"),
    ("email", "first.last-name@sub.domain.example.com"),
    ("email", "support+ticket-42@shop.example"),
    ("email", "a.b@example.travel"),
    // Internationalised domains and local parts.
    ("email", "jörg@bücher.de"),
    ("email", "user@例え.jp"),
    ("email", "用户@例子.广告"),
    ("email", "δοκιμή@παράδειγμα.δοκιμή"),
    ("email", "müller.straße@münchen.example"),
    ("email", "info@xn--bcher-kva.de"),
    // Phone numbers, international and national.
    ("phone", "+44 20 7946 0958"),
    ("phone", "+44 (0)20 7946 0958"),
    ("phone", "0044 20 7946 0958"),
    ("phone", "+1 415-555-0132"),
    ("phone", "+1 (415) 555-0132"),
    ("phone", "(555) 123-4567"),
    ("phone", "555-123-4567"),
    ("phone", "555.123.4567"),
    ("phone", "+49 30 901820"),
    ("phone", "+49-30-9018-2000"),
    ("phone", "0049 89 12345678"),
    ("phone", "030 901820 00"),
    ("phone", "+33 1 23 45 67 89"),
    ("phone", "+33.1.23.45.67.89"),
    ("phone", "01 23 45 67 89"),
    ("phone", "+39 06 6982 1234"),
    ("phone", "+34 912 345 678"),
    ("phone", "+31 20 123 4567"),
    ("phone", "+81 3-1234-5678"),
    ("phone", "+61 2 9876 5432"),
    ("phone", "+353 1 234 5678"),
    ("phone", "+4915112345678"),
    ("phone", "020 7946 0958"),
    ("phone", "07700 900123"),
    ("phone", "+91 98765 43210"),
    ("phone", "+55 11 91234-5678"),
    // A North American number without separators (area code and exchange valid).
    ("phone", "4155552671"),
    ("phone", "2125550199"),
    // Card numbers, any separators, full-width digits; all Luhn-valid.
    ("card_number", "4111 1111 1111 1111"),
    ("card_number", "4111111111111111"),
    ("card_number", "5500-0000-0000-0004"),
    ("card_number", "5555.5555.5555.4444"),
    ("card_number", "4012_8888_8888_1881"),
    ("card_number", "4222/2222/2222/2220"),
    ("card_number", "3782 822463 10005"),
    ("card_number", "3056 930902 5904"),
    ("card_number", "6011 1111 1111 1117"),
    ("card_number", "3530 1113 3330 0000"),
    ("card_number", "4111\u{00A0}1111\u{00A0}1111\u{00A0}1111"),
    ("card_number", "4111\u{202F}1111\u{202F}1111\u{202F}1111"),
    ("card_number", "４１１１ １１１１ １１１１ １１１１"),
    ("card_number", "４１１１１１１１１１１１１１１１"),
    ("card_number", "5105-1051-0510-5100"),
    // Split by zero-width characters (one between groups, or one between every digit).
    ("card_number", "4111\u{200B}1111\u{200B}1111\u{200B}1111"),
    ("card_number", "4111\u{200C}1111\u{200C}1111\u{200C}1111"),
    ("card_number", "5500\u{200D}0000\u{200D}0000\u{200D}0004"),
    ("card_number", "4111\u{2060}1111\u{2060}1111\u{2060}1111"),
    ("card_number", "4111\u{FEFF}1111\u{FEFF}1111\u{FEFF}1111"),
    (
        "card_number",
        "4\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1\u{200B}1",
    ),
    ("card_number", "4111 \u{200B}1111 1111 1111"),
    // IBANs in any case and spacing, every one mod-97 valid with its country's length.
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "gb82west12345698765432"),
    ("iban", "DE89370400440532013000"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "de89 3704 0044 0532 0130 00"),
    ("iban", "FR1420041010050500013M02606"),
    ("iban", "NL91ABNA0417164300"),
    ("iban", "ES9121000418450200051332"),
    ("iban", "IT60X0542811101000000123456"),
    ("iban", "BE68539007547034"),
    ("iban", "CH9300762011623852957"),
    ("iban", "NO9386011117947"),
    ("iban", "AT611904300234573201"),
    // Keys and secrets.
    ("api_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("api_key", "rk_test_51H8xYzAbCdEfGhIjKlMnOp"),
    ("api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "ASIAY34FZKBOKMUTVV7A"),
    ("api_key", "AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ("api_key", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    (
        "api_key",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
    ),
    ("api_key", "xoxb-1234567890-abcdefghijkl"),
    ("api_key", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"),
    ("api_key", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"),
    (
        "api_key",
        "SG.abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
    ),
    ("api_key", "glpat-abcdefghij0123456789"),
    ("api_key", "npm_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("api_key", "hf_abcdefghijklmnopqrstuvwxyzABCDEF"),
    (
        "bearer_token",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
    ),
    ("bearer_token", "bearer abcdefghijklmnop0123456789"),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\n-----END RSA PRIVATE KEY-----",
    ),
    (
        "private_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    ),
    // A key block cut before its END line: the header and every base64 line after it.
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\nb3BlbnNzaC1rZXktdjEAAAAA==",
    ),
    (
        "private_key",
        "-----BEGIN PRIVATE KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\nBKcwggSjAgEAAoIBAQC7",
    ),
];

/// Labelled secrets: the whole text, and the value that must not survive (the label stays).
pub const LABELLED: &[(&str, &str)] = &[
    ("password=hunter2", "hunter2"),
    ("Password: s3cr3t!", "s3cr3t!"),
    ("secret: 'abc-def-ghi'", "abc-def-ghi"),
    ("api_key=\"AbCdEf0123456789\"", "AbCdEf0123456789"),
    ("client_secret=xyz987-QWE", "xyz987-QWE"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("PWD=letmein", "letmein"),
    ("token: ghx-0000-1111", "ghx-0000-1111"),
    ("access_token=abc.def.ghi", "abc.def.ghi"),
    ("passphrase = 'blue sky'", "blue sky"),
    (
        "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        r#"{"SecretAccessKey": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}"#,
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    ),
];

/// Values found only with what surrounds them: the whole text, and each value in it with its
/// kind. Exactly these spans are found (what glues a value to its text stays in clear) and
/// nothing else.
pub const IN_CONTEXT: &[(&str, &[(&str, &str)])] = &[
    // A card glued to a word by `_`, `/` or `-`.
    (
        "card_4111111111111111",
        &[("card_number", "4111111111111111")],
    ),
    (
        "ref/4111-1111-1111-1111 was declined",
        &[("card_number", "4111-1111-1111-1111")],
    ),
    ("x-4111111111111111", &[("card_number", "4111111111111111")]),
    (
        "paid with visa_4012888888881881_exp",
        &[("card_number", "4012888888881881")],
    ),
    (
        "card_4111\u{200B}1111\u{200B}1111\u{200B}1111 again",
        &[("card_number", "4111\u{200B}1111\u{200B}1111\u{200B}1111")],
    ),
    // `tel:` URIs.
    ("call tel:+14155552671 now", &[("phone", "+14155552671")]),
    (
        "<a href=\"tel:+1-415-555-2671\">call us</a>",
        &[("phone", "+1-415-555-2671")],
    ),
    ("TEL:+442079460958", &[("phone", "+442079460958")]),
    // A bare North American number with words that say phone around it.
    ("phone no. 4155552671", &[("phone", "4155552671")]),
    (r#"{"mobile": "3125550143"}"#, &[("phone", "3125550143")]),
    // An AWS secret access key next to its key id (the CSV AWS hands out, a config line).
    (
        "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &[
            ("api_key", "AKIAIOSFODNN7EXAMPLE"),
            ("secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ],
    ),
    (
        "Access key ID,Secret access key\nAKIAIOSFODNN7EXAMPLE,je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY\n",
        &[
            ("api_key", "AKIAIOSFODNN7EXAMPLE"),
            ("secret", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
        ],
    ),
    // A git sha next to a key id is a sha: hex only is never an AWS secret.
    (
        "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 rotated AKIAIOSFODNN7EXAMPLE",
        &[("api_key", "AKIAIOSFODNN7EXAMPLE")],
    ),
    // A key block without its END line, up to the blank line after it; the headers of an
    // encrypted key and the blank line under them are part of it.
    (
        "here:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\nb3BlbnNzaC1rZXktdjEAAAAA==\n\nthanks, Sam",
        &[(
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\nb3BlbnNzaC1rZXktdjEAAAAA==",
        )],
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIEowIBAAKCAQEA7Vx\nb3BlbnNzaC1rZXktdjEAAAAA\n\nbye",
        &[(
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\nMIIEowIBAAKCAQEA7Vx\nb3BlbnNzaC1rZXktdjEAAAAA",
        )],
    ),
    // The same in a JSON document's text, its line ends escaped.
    (
        r#"{"key": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY\nAwEHoUQDQgAE"}"#,
        &[(
            "private_key",
            r"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY\nAwEHoUQDQgAE",
        )],
    ),
];

/// Texts in which nothing is personal data: dates, times, timestamps, order numbers, amounts,
/// lists of numbers, versions, ids, and (by default) IP addresses.
pub const NEGATIVES: &[&str] = &[
    "Order A12345 was placed on 2024-05-30 10:20.",
    "Delivery between 2024-05-30 10:20 and 2024-05-30 12:45",
    "Meet at 10:20:30 on 30/05/2024",
    "The invoice date is 30.05.2024 and due 15.06.2024",
    "timestamp 1700000000000 and 1700000000",
    "at 2026-12-01T10:00:00Z, then 2026-12-01T10:00:00.123+01:00",
    "Refund 4200 cents (42.00 EUR) for order ORD-2024-000123",
    "Total: 1,234.56 USD, tax 234.56, shipping 12.00",
    "Amounts: 10 20 30 40 50 60 70 80",
    "scores 1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "items 12 34 56 78 90 12",
    "version 1.2.3 and 10.4.2.1-beta",
    "ref 4111 1111 1111 1112 is not a card (bad checksum)",
    "call 018bcfe5-6800-7212-9212-121212121212/r0/s0",
    "sha256:3fa9c1d2e4b5a6f70123456789abcdef",
    "server at 192.168.10.12 and 10.0.0.1",
    "ipv6 2001:db8::8a2e:370:7334 answered",
    "SKU W1234567 is in stock, 3 left",
    "tracking 1Z999AA10123456784 is in transit",
    "the year 2026, page 123, room 4567",
    "conversion 12.5% of 1,000,000 visits",
    "order numbers A1001, A1002 and A1003",
    "Pin 1234 for the locker",
    "GB is a country and DE89 is not an IBAN",
    "13 of 17 tests pass at 99.5% coverage",
    "phone-like but a time: 12:30-14:45",
    "range 2024-2026 and 1999-2001",
    "coordinates 51.5074, -0.1278",
    "card ending 1111 was charged",
    "build 20261203.1 shipped",
    // Card-like numbers glued to text that is not a card: a letter right before, a Luhn-valid
    // id that starts like no card network.
    "sku A4111111111111111 is in stock",
    "session_7111111111111114 expired",
    "trace-1234567890123452 and x_9000000000000001",
    "ratio 0.4111111111111111 of the total",
    // Ten digits that are not a phone: epoch seconds, order numbers, amounts, compact dates,
    // numbers no North American line has.
    "ts=4155552671 then ts=1717171717",
    r#"{"created_at": 2125550199, "order_id": 3125550143}"#,
    "order 4155552671 shipped",
    "invoice no 4155552671, total 2125550199 cents",
    "paid $4155552671 and #3125550143",
    "build 2026120110 passed",
    "call 1234567890 or 0123456789 or 4915550123",
    "the value 4155552671 ms",
    // 40 characters that are not an AWS secret: hex (a git sha), base64 with no key id near.
    "sha1 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 of the file",
    "blob aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y in the cache",
    "tel is short for telephone: 12:30",
    // No local part, no dot in the domain, a public key.
    "thanks @jörg, see @bücher.de and admin@localhost",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::Redactor;

    #[test]
    fn the_corpus_holds_at_least_a_hundred_cases() {
        eprintln!(
            "detection corpus: {} positives, {} labelled secrets, {} in context, {} negatives",
            CORPUS.len(),
            LABELLED.len(),
            IN_CONTEXT.len(),
            NEGATIVES.len()
        );
        assert!(CORPUS.len() + LABELLED.len() + IN_CONTEXT.len() + NEGATIVES.len() >= 100);
    }

    #[test]
    fn every_positive_is_found_as_its_kind_in_a_sentence() {
        let r = Redactor::builtin();
        let mut misses = Vec::new();
        for (kind, value) in CORPUS {
            for text in [
                value.to_string(),
                format!("my details: {value} thanks"),
                format!("(reach me at {value}.)"),
            ] {
                let (out, found) = r.redact(&text);
                // The whole value, and only it: no part of it left in clear.
                let whole = text.replace(value, &format!("[REDACTED:{kind}]"));
                if out != whole || !found.iter().any(|k| k == kind) {
                    misses.push(format!("{kind} {text:?} → {out:?} ({found:?})"));
                }
            }
        }
        assert!(
            misses.is_empty(),
            "{} missed:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }

    #[test]
    fn labelled_secrets_lose_their_value_and_keep_their_label() {
        let r = Redactor::builtin();
        let mut misses = Vec::new();
        for (text, value) in LABELLED {
            let (out, found) = r.redact(text);
            if out.contains(value) || found != ["secret"] {
                misses.push(format!("{text:?} → {out:?} ({found:?})"));
            }
        }
        assert!(
            misses.is_empty(),
            "{} missed:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }

    #[test]
    fn values_in_context_are_found_exactly() {
        let r = Redactor::builtin();
        let mut misses = Vec::new();
        for (text, values) in IN_CONTEXT {
            let (out, found) = r.redact(text);
            let mut want = text.to_string();
            for (kind, value) in *values {
                want = want.replacen(value, &format!("[REDACTED:{kind}]"), 1);
            }
            let kinds: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
            if out != want || found != kinds {
                misses.push(format!("{text:?} → {out:?} ({found:?})"));
            }
        }
        assert!(
            misses.is_empty(),
            "{} missed:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }

    /// Precision and recall over the whole corpus: each positive (a corpus value in each of its
    /// three sentences, a labelled secret, a value in context) found exactly as its kind is a
    /// true positive, else a false negative; each value found in a negative, and each extra
    /// value found next to a positive, is a false positive.
    pub(crate) fn scores(r: &Redactor) -> (usize, usize, usize) {
        let (mut tp, mut fp, mut fn_) = (0, 0, 0);
        for (kind, value) in CORPUS {
            for text in [
                value.to_string(),
                format!("my details: {value} thanks"),
                format!("(reach me at {value}.)"),
            ] {
                let (out, found) = r.redact(&text);
                let whole = text.replace(value, &format!("[REDACTED:{kind}]"));
                if out == whole && found.iter().any(|k| k == kind) {
                    tp += 1;
                    fp += found.len() - 1;
                } else {
                    fn_ += 1;
                    fp += found.iter().filter(|k| k != kind).count();
                }
            }
        }
        for (text, value) in LABELLED {
            let (out, found) = r.redact(text);
            if !out.contains(value) && found.iter().any(|k| k == "secret") {
                tp += 1;
                fp += found.len() - 1;
            } else {
                fn_ += 1;
                fp += found.len();
            }
        }
        for (text, values) in IN_CONTEXT {
            let spans = r.find(text);
            let mut matched = 0;
            for (kind, value) in *values {
                let hit = text.find(value).is_some_and(|start| {
                    spans.iter().any(|f| {
                        f.kind == *kind && f.start == start && f.end == start + value.len()
                    })
                });
                if hit {
                    tp += 1;
                    matched += 1;
                } else {
                    fn_ += 1;
                }
            }
            fp += spans.len() - matched.min(spans.len());
        }
        for text in NEGATIVES {
            fp += r.find(text).len();
        }
        (tp, fp, fn_)
    }

    #[test]
    fn precision_and_recall_over_the_corpus() {
        let (tp, fp, fn_) = scores(&Redactor::builtin());
        let precision = tp as f64 / (tp + fp).max(1) as f64;
        let recall = tp as f64 / (tp + fn_).max(1) as f64;
        eprintln!(
            "detection corpus: {tp} true positives, {fp} false positives, {fn_} false negatives: \
             precision {precision:.4}, recall {recall:.4}"
        );
        assert_eq!(
            (fp, fn_),
            (0, 0),
            "precision {precision:.4}, recall {recall:.4}"
        );
    }

    #[test]
    fn negatives_are_left_alone() {
        let r = Redactor::builtin();
        let mut wrong = Vec::new();
        for text in NEGATIVES {
            let (out, found) = r.redact(text);
            if !found.is_empty() {
                wrong.push(format!("{text:?} → {out:?} ({found:?})"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} wrongly found:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn ip_addresses_are_found_when_asked() {
        let r = Redactor::with_options(&[], true).expect("compiles");
        let (out, found) = r.redact("from 192.168.10.12 and 2001:db8::8a2e:370:7334, v1.2.3");
        assert_eq!(found, ["ip_address", "ip_address"], "{out}");
    }

    #[test]
    fn checksums() {
        assert!(crate::guard::luhn("4111111111111111") && !crate::guard::luhn("4111111111111112"));
        assert!(crate::guard::iban_valid("GB82WEST12345698765432"));
        assert!(!crate::guard::iban_valid("GB82WEST12345698765433"));
        assert!(
            !crate::guard::iban_valid("GB82WEST1234569876543"),
            "wrong length for GB"
        );
    }
}
