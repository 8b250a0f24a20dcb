//! Vault round trips: tokens, recovery, masking, forgetting.

use super::*;

#[test]
fn values_become_stable_tokens_come_back_and_are_forgotten() {
    let v = Vault::ephemeral();
    let (user, mut t) = v.tokenize_user("acme", "jane@example.com").expect("user");
    assert!(token::is_token(&user));
    let (text, found) = v
        .tokenize_text(
            "acme",
            &user,
            "mail JANE@example.com or call +44 20 7946 0958",
        )
        .expect("text");
    t.absorb(found);
    assert!(
        !text.contains("example.com") && !text.contains("7946"),
        "{text}"
    );
    assert_eq!(t.kinds, ["user", "email", "phone"]);
    // Equal values (up to spelling), equal tokens; the same value again writes nothing new.
    let (again, _) = v
        .tokenize_text("acme", &user, "jane@example.com")
        .expect("again");
    assert!(text.contains(&again), "{again} in {text}");
    let (_, more) = v
        .tokenize_text("acme", &user, "jane@example.com")
        .expect("again");
    assert!(more.records.is_empty());
    let (_, t2) = v
        .tokenize_text("acme", &user, "JANE@example.com")
        .expect("back");
    t.absorb(t2);
    // Another tenant: other tokens.
    let (other_user, _) = v.tokenize_user("globex", "jane@example.com").expect("user");
    assert_ne!(user, other_user);
    v.persist(&t.records).expect("persist");
    assert_eq!(
        v.detokenize_text("acme", &user, &text),
        "mail JANE@example.com or call +44 20 7946 0958"
    );
    assert_eq!(
        view::mask_text(Some(v.store().as_ref()), "acme", &user, &text),
        "mail [REDACTED:email] or call [REDACTED:phone]"
    );
    // Forget the user: nothing comes back, views say so, other users are untouched.
    let (bob, b) = v.tokenize_user("acme", "bob").expect("bob");
    let (bob_text, bt) = v
        .tokenize_text("acme", &bob, "bob@example.com")
        .expect("bob");
    v.persist(&b.records)
        .and_then(|_| v.persist(&bt.records))
        .expect("persist");
    let removed = v.forget("acme", Some("jane@example.com")).expect("forget");
    assert!(removed.len() >= 3);
    assert_eq!(
        v.detokenize_text("acme", &user, &text),
        "mail [FORGOTTEN:email] or call [FORGOTTEN:phone]"
    );
    assert_eq!(
        view::mask_text(Some(v.store().as_ref()), "acme", &user, &text),
        "mail [FORGOTTEN:email] or call [FORGOTTEN:phone]"
    );
    assert_eq!(
        v.detokenize_text("acme", &bob, &bob_text),
        "bob@example.com"
    );
    // Forget the tenant.
    v.forget("acme", None).expect("forget");
    assert_eq!(
        v.detokenize_text("acme", &bob, &bob_text),
        "[FORGOTTEN:email]"
    );
    assert!(
        v.store()
            .keys(b"")
            .expect("keys")
            .iter()
            .all(|k| !k.windows(4).any(|w| w == b"acme"))
    );
}

#[test]
fn json_strings_are_tokenized_and_numbers_kept() {
    let v = Vault::ephemeral();
    let (user, _) = v.tokenize_user("acme", "u1").expect("user");
    let (json, found) = v
        .tokenize_json_text(
            "acme",
            &user,
            r#"{"to":"a@b.io","iban":"DE89370400440532013000","amount_cents":4200}"#,
        )
        .expect("json");
    assert_eq!(found.kinds, ["email", "iban"]);
    assert!(json.contains("4200") && !json.contains("a@b.io"), "{json}");
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("json");
    v.detokenize_json("acme", &user, &mut value);
    assert_eq!(value["to"], "a@b.io");
    assert_eq!(value["iban"], "DE89370400440532013000");
}

#[test]
fn a_value_goes_back_into_json_escaped() {
    let v = Vault::ephemeral();
    let (user, mut t) = v.tokenize_user("acme", "u-1").expect("user");
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\n-----END RSA PRIVATE KEY-----";
    let args = serde_json::json!({"note": format!("key \"{key}\"")}).to_string();
    let (tokenized, found) = v
        .tokenize_json_text("acme", &user, &args)
        .expect("tokenize");
    t.absorb(found);
    v.persist(&t.records).expect("persist");
    assert!(!tokenized.contains("BEGIN"), "{tokenized}");
    let back = v
        .detokenize_checked("acme", &user, &tokenized)
        .expect("back");
    let parsed: serde_json::Value = serde_json::from_str(&back).expect("still JSON");
    assert_eq!(parsed["note"], format!("key \"{key}\""));
    assert_eq!(v.detokenize_text("acme", &user, &tokenized), back);
}
