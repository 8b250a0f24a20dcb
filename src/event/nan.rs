//! Numbers that may be NaN, through JSON.

/// A number that may be NaN: JSON has no NaN and writes it as `null`, which reads back as NaN
/// (a turn whose model reported no confidence must survive a snapshot).
pub(super) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number or null")
        }
        fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_f32<E>(self, v: f32) -> Result<f64, E> {
            Ok(f64::from(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_unit<E>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }
        fn visit_none<E>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }
    }
    d.deserialize_any(V)
}
