//! Kafka-compatible key partitioning, so a Java producer's default partitioner, librdkafka's
//! `murmur2_random` and Ballast's own backends agree on where a turn lives.

use crate::ids::Partition;

/// Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut rest = data;
    while let Some((c, tail)) = rest.split_first_chunk::<4>() {
        let mut k = u32::from_le_bytes(*c);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
        rest = tail;
    }
    // The last one to three bytes.
    if let [_, _, c, ..] = *rest {
        h ^= u32::from(c) << 16;
    }
    if let [_, b, ..] = *rest {
        h ^= u32::from(b) << 8;
    }
    if let [a, ..] = *rest {
        h ^= u32::from(a);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// `toPositive(murmur2(key)) % partitions`, as Kafka's default partitioner does for keyed records.
pub fn partition_for(key: &[u8], partitions: u32) -> Partition {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    Partition(positive % partitions.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafka_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for i in 0..1000u32 {
            let key = format!("turn-{i}");
            let p = partition_for(key.as_bytes(), 7);
            assert!(p.0 < 7);
            assert_eq!(p, partition_for(key.as_bytes(), 7));
        }
        assert_eq!(partition_for(b"x", 0), Partition(0));
    }
}
