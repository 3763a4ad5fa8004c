//! Request ids: unique per process lifetime and cheap to make (no syscalls, no allocation):
//! a per-shard random prefix and a counter, formatted as a UUID (`x-amzn-RequestId`).
//!
//! An id carries 122 free bits (a v4 UUID fixes 6): 64 bits `p ^ f(m)` and 58 bits `m`, where
//! `p = splitmix64(seed)` is the shard's prefix, `m` is the shard's counter under a keyed
//! 58-bit bijection, and `f` is a fixed mixer. Within a shard, distinct counters give distinct
//! `m`. Across shards, equal ids would need equal `m` and then equal `p`, which splitmix64 (a
//! bijection) only gives for equal seeds. So ids are unique while seeds differ and the counter
//! stays below 2^58, and every id looks random (all visible bits change from one to the next).

/// Generates ids for one shard. `next` takes `&mut self`: each shard owns one.
pub struct RequestIds {
    /// splitmix64 of the seed.
    prefix: u64,
    /// Keys the counter permutation (derived from the seed too).
    key: u64,
    counter: u64,
}

const MASK58: u64 = (1 << 58) - 1;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// splitmix64's output function (a bijection on u64) applied to `x + gamma`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A keyed bijection on 58-bit values (xorshifts and odd multiplications mod 2^58).
fn permute58(c: u64, key: u64) -> u64 {
    let mut x = (c ^ key) & MASK58;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9) & MASK58;
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb) & MASK58;
    x ^= x >> 31;
    x
}

impl RequestIds {
    /// `seed` should differ per process and shard (e.g. time ^ pid ^ shard index).
    pub fn new(seed: u64) -> Self {
        let prefix = splitmix64(seed);
        RequestIds {
            prefix,
            key: splitmix64(prefix),
            counter: 0,
        }
    }

    /// The next id, 36 ASCII bytes `xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx`.
    // An endless generator, not an `Iterator`: the name is part of the shard contract.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> [u8; 36] {
        let m = permute58(self.counter, self.key);
        self.counter = (self.counter + 1) & MASK58;
        let hi = self.prefix ^ splitmix64(m);
        // 122 free bits: hi (64) above m (58).
        let v = (u128::from(hi) << 58) | u128::from(m);
        // Spread them around the version nibble (bits 76..80) and the variant (bits 62..64).
        let uuid = ((v >> 74) << 80)
            | (0x4 << 76)
            | (((v >> 62) & 0xfff) << 64)
            | (0b10 << 62)
            | (v & ((1 << 62) - 1));
        format_uuid(uuid)
    }
}

fn format_uuid(uuid: u128) -> [u8; 36] {
    let mut out = [b'-'; 36];
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let shift = 124 - 4 * nibble;
        *slot = HEX[((uuid >> shift) & 0xf) as usize];
        nibble += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn well_formed(id: &[u8; 36]) {
        for (i, &b) in id.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                assert_eq!(b, b'-', "{}", String::from_utf8_lossy(id));
            } else {
                assert!(
                    b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
                    "{}",
                    String::from_utf8_lossy(id)
                );
            }
        }
        assert_eq!(id[14], b'4', "version nibble");
        assert!(matches!(id[19], b'8' | b'9' | b'a' | b'b'), "variant");
    }

    #[test]
    fn format() {
        assert_eq!(
            &format_uuid(0x0123_4567_89ab_4def_8123_4567_89ab_cdef),
            b"01234567-89ab-4def-8123-456789abcdef"
        );
    }

    #[test]
    fn ids_are_well_formed_and_unique_within_and_across_shards() {
        let mut seen = HashSet::new();
        for seed in [0, 1, 2, 3, u64::MAX, 0x5eed] {
            let mut ids = RequestIds::new(seed);
            let mut prev = ids.next();
            well_formed(&prev);
            assert!(seen.insert(prev));
            for _ in 0..20_000 {
                let id = ids.next();
                well_formed(&id);
                assert_ne!(id, prev);
                assert!(seen.insert(id), "{}", String::from_utf8_lossy(&id));
                prev = id;
            }
        }
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different_start() {
        let (mut a, mut b, mut c) = (RequestIds::new(7), RequestIds::new(7), RequestIds::new(8));
        let (x, y, z) = (a.next(), b.next(), c.next());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn counter_permutation_is_injective_on_a_sample() {
        let key = splitmix64(42);
        let mut seen = HashSet::new();
        for c in 0..100_000u64 {
            let m = permute58(c, key);
            assert!(m <= MASK58);
            assert!(seen.insert(m));
        }
        // Values near the top of the 58-bit range too.
        for c in (MASK58 - 1000)..=MASK58 {
            assert!(seen.insert(permute58(c, key)));
        }
    }

    #[test]
    fn all_visible_bits_vary() {
        // Over a few ids, every hex position (other than the fixed ones) takes several values.
        let mut ids = RequestIds::new(99);
        let sample: Vec<[u8; 36]> = (0..64).map(|_| ids.next()).collect();
        for pos in 0..36 {
            if matches!(pos, 8 | 13 | 14 | 18 | 23) {
                continue;
            }
            let distinct: HashSet<u8> = sample.iter().map(|id| id[pos]).collect();
            assert!(distinct.len() > 2, "position {pos} barely changes");
        }
    }
}
