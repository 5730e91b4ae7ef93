//! The project's one pseudo-random generator: SplitMix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014), as Java's `SplittableRandom` and Vigna's
//! reference code define it.
//!
//! Why our own: a seed is a promise. `dynamo sim --seed S` in a bug report must expand to the same
//! plan next year, whatever happened to the crates around us; a generator borrowed from a library
//! (proptest's strategies and value trees, `rand`'s `StdRng`, whose algorithm is documented as
//! unstable) changes every plan when that library changes. SplitMix64 is ten lines of integer
//! arithmetic with published constants, so the expansion of a seed depends only on this file and
//! on the order of the draws, which the plan generator documents (see [`crate::generate`]).
//!
//! Every method is integer arithmetic except [`SplitMix64::unit_f64`], whose result is exact (a
//! 53-bit integer times a power of two), so the same seed gives the same numbers on every machine.

/// SplitMix64: a 64-bit state advanced by a Weyl sequence and mixed by a finaliser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

/// The Weyl increment (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The finaliser alone (Stafford's Mix13 variant, as SplitMix64 uses it): a bijection of u64 that
/// spreads every input bit over the output. Also used to derive unrelated seeds from one seed.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A number in `0..bound`, without modulo bias (Lemire's multiply-and-reject). `bound` must not
    /// be zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no member");
        // The low half of x * bound is biased for the first (2^64 mod bound) values; draws that
        // land there are thrown away. At most a few draws, however large the bound.
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "an empty range has no member");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `choices`, each equally likely.
    pub fn pick<T: Clone>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len() as u64) as usize].clone()
    }

    /// An index drawn with the given weights (not all zero).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut draw = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if draw < w {
                return i;
            }
            draw -= w;
        }
        unreachable!("the draw is below the total of the weights")
    }

    /// Shuffles `items` in place (Fisher-Yates, from the back).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A number in `[0, 1)` with 53 random bits, exactly representable.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_the_published_one() {
        // Vigna's splitmix64.c seeded with 1234567: the first outputs.
        let mut g = SplitMix64::new(1_234_567);
        assert_eq!(g.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(g.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(g.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn bounded_draws_stay_in_range_and_cover_it() {
        let mut g = SplitMix64::new(7);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            let x = g.below(7);
            seen[x as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        for _ in 0..1_000 {
            let x = g.between(3, 5);
            assert!((3..=5).contains(&x));
        }
        assert_eq!(g.between(9, 9), 9);
        let _ = g.between(0, u64::MAX);
        let u = g.unit_f64();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn weights_and_shuffles() {
        let mut g = SplitMix64::new(1);
        for _ in 0..100 {
            assert_eq!(g.weighted(&[0, 5, 0]), 1);
        }
        let mut items: Vec<u32> = (0..10).collect();
        g.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(
            items, sorted,
            "ten items shuffled stay sorted once in 3.6 million"
        );
    }
}
