//! The Kafka broker the tests use: `BALLAST_KAFKA_BOOTSTRAP`, set by scripts/test.sh after
//! `scripts/kafka.sh start`. Without it a Kafka test is skipped loudly — unless
//! `BALLAST_REQUIRE_KAFKA=1` (the test command sets it), where it fails.

pub fn bootstrap() -> Option<String> {
    match std::env::var("BALLAST_KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => {
            if std::env::var("BALLAST_REQUIRE_KAFKA").as_deref() == Ok("1") {
                panic!(
                    "BALLAST_REQUIRE_KAFKA=1 but BALLAST_KAFKA_BOOTSTRAP is unset: \
                     start a broker with scripts/kafka.sh start, or run scripts/test.sh"
                );
            }
            eprintln!(
                "SKIPPED: no Kafka broker (run scripts/kafka.sh start and set \
                 BALLAST_KAFKA_BOOTSTRAP=127.0.0.1:9092, or run scripts/test.sh)"
            );
            None
        }
    }
}

/// A topic name no other test (or earlier run) uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}
