//! Hop-by-Hop and End-to-End identifier generators (RFC 6733 §3).
//!
//! RFC 6733 §3: "Hop-by-Hop Identifier ... The sender MUST ensure that the Hop-by-Hop
//! Identifier in a request is unique on a given connection at any given time". "End-to-End
//! Identifier ... MUST remain locally unique for a period of at least 4 minutes, even across
//! reboots. ... implementations MAY set the high order 12 bits to contain the low order 12 bits
//! of current time, and the low order 20 bits to a random value."
//!
//! No clock or randomness is read here: the caller passes both in, so tests are deterministic.

/// Generates identifiers for the requests we originate (DWR, DPR).
#[derive(Clone, Debug)]
pub struct IdGenerator {
    next_hop_by_hop: u32,
    end_to_end_high: u32,
    end_to_end_low: u32,
}

impl IdGenerator {
    /// `unix_time_secs`: the current time; `random`: any random value (seeds both counters).
    pub fn new(unix_time_secs: u64, random: u32) -> Self {
        Self {
            next_hop_by_hop: random,
            end_to_end_high: ((unix_time_secs & 0xfff) as u32) << 20,
            end_to_end_low: random.rotate_left(13) & 0x000f_ffff,
        }
    }

    /// The next Hop-by-Hop Identifier (a wrapping counter from a random start).
    pub fn next_hop_by_hop(&mut self) -> u32 {
        let v = self.next_hop_by_hop;
        self.next_hop_by_hop = v.wrapping_add(1);
        v
    }

    /// The next End-to-End Identifier: 12 bits of time, 20 bits of counter from a random start.
    pub fn next_end_to_end(&mut self) -> u32 {
        let v = self.end_to_end_high | self.end_to_end_low;
        self.end_to_end_low = (self.end_to_end_low + 1) & 0x000f_ffff;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end_high_bits_are_time() {
        let mut g = IdGenerator::new(0x1234_5abc, 7);
        let a = g.next_end_to_end();
        let b = g.next_end_to_end();
        assert_eq!(a >> 20, 0xabc);
        assert_eq!(b >> 20, 0xabc);
        assert_ne!(a, b);
        assert_eq!(g.next_hop_by_hop(), 7);
        assert_eq!(g.next_hop_by_hop(), 8);
        let mut w = IdGenerator::new(0, u32::MAX);
        assert_eq!(w.next_hop_by_hop(), u32::MAX);
        assert_eq!(w.next_hop_by_hop(), 0);
    }
}
