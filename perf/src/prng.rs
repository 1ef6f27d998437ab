//! A small deterministic generator; message content must be reproducible from a seed and
//! the `rand` crate's stream is not promised stable across versions.

/// SplitMix64 (Steele, Lea, Flood 2014): one add and two multiplies per draw, and every
/// seed, zero included, gives a full-period stream.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for one item of a stream, so item `n`'s content does not depend on how
    /// many items came before it (senders split a run's sequence numbers among threads).
    pub fn for_item(seed: u64, item: u64) -> Self {
        let mut mixer = Self::new(seed ^ item.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        Self::new(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound`; the multiply-shift map has a bias below 2^-40 for the small
    /// bounds used here, which is immaterial for load generation.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A value in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with the given probability in percent.
    pub fn percent(&mut self, chance: u64) -> bool {
        self.below(100) < chance
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn between_stays_in_bounds() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..10_000 {
            let v = rng.between(80, 1500);
            assert!((80..=1500).contains(&v));
        }
    }
}
