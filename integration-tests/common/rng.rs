//! xorshift64*: the tests' reproducible choices (the fuzz smoke test's mutations, the fault
//! runs' workload), with no dependency.

/// The state; any non-zero seed (zero stays zero).
pub struct Rng(pub u64);

impl Rng {
    /// A generator from any seed, zero included (mixed, and made odd).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
