//! Which SIMs of a bulk batch go in an import bundle (`P/simbundle/`, see [`super::layout`]),
//! and the compares that keep compare-and-swap whole for them: none of them may have a key of
//! its own when the bundle is written.
//!
//! The SIMs are those the batch creates (put once, read as absent) that this node's cache
//! holds in no form and that have no tombstone. Rather than one compare a SIM, one compare
//! covers each run of them, in IMSI order, that no SIM or tombstone known to the cache
//! interrupts: "no key at all from `P/sim/<first>` to `P/sim/<last>`". An import of a fresh
//! range of IMSIs is then one compare a transaction (etcd evaluates a compare as a range read:
//! nothing to read in a fresh range). A key the cache does not know yet fails the compare, and
//! the request is applied again from the newer state, where the key splits the run.
//!
//! This module builds compares; it sends nothing and decides nothing about a SIM's state.

use std::collections::{HashMap, HashSet};

use etcd_client::{Compare, CompareOp};

use super::layout;
use super::ledger::BUNDLE_MIN;
use super::Shared;
use crate::context::Imsi;
use crate::store::{Batch, LocalRead, Op, StoreError};

impl Shared {
    /// The SIMs of `batch` that go in its import bundle (at least [`BUNDLE_MIN`], or none),
    /// and the compares that guard them (see the module). (A bundle written since the cache's
    /// position may hold one of them too: only a new provisioning processor re-doing the same
    /// request writes that, and the newer entry, the same SIM, wins.)
    pub(super) fn bundled_sims(
        &self,
        batch: &Batch,
    ) -> Result<(HashSet<Imsi>, Vec<Compare>), StoreError> {
        let creates = batch
            .ops
            .iter()
            .filter(|op| matches!(op, Op::PutSim { expect_rev: 0, .. }))
            .count();
        if creates < BUNDLE_MIN {
            // A session's bind, a single change: nothing to bundle, nothing to look up.
            return Ok((HashSet::new(), Vec::new()));
        }
        let mut ops: HashMap<Imsi, (usize, bool)> = HashMap::new();
        for op in &batch.ops {
            let (imsi, new) = match op {
                Op::PutSim { sim, expect_rev } => (sim.imsi, *expect_rev == 0),
                Op::DeleteSim { imsi, .. } => (*imsi, false),
                _ => continue,
            };
            let e = ops.entry(imsi).or_insert((0, true));
            e.0 += 1;
            e.1 &= new;
        }
        let mut candidates: Vec<Imsi> = ops
            .into_iter()
            .filter(|(_, (n, fresh))| *n == 1 && *fresh)
            .map(|(imsi, _)| imsi)
            .collect();
        candidates.sort_unstable();
        let (Some(first), Some(last)) = (candidates.first(), candidates.last()) else {
            return Ok((HashSet::new(), Vec::new()));
        };
        if candidates.len() < BUNDLE_MIN {
            return Ok((HashSet::new(), Vec::new()));
        }
        // What the cache knows between the first and the last: SIMs (own key or bundled) and
        // tombstones. Too many to walk: one compare a SIM instead.
        let limit = 4 * candidates.len() + 64;
        let held = self.cache.sims_between(first, last, limit)?;
        let tombs = self.cache.meta_keys_between(
            &layout::tomb_meta(first),
            &layout::tomb_meta(last),
            limit,
        )?;
        let (Some(held), Some(tombs)) = (held, tombs) else {
            return self.bundled_one_by_one(candidates);
        };
        let mut known: Vec<Imsi> = held;
        known.extend(tombs.iter().filter_map(|k| layout::tomb_imsi(k)));
        known.sort_unstable();
        let (new, runs) = runs(&candidates, &known);
        let new: HashSet<Imsi> = new.into_iter().collect();
        if new.len() < BUNDLE_MIN {
            return Ok((HashSet::new(), Vec::new()));
        }
        let compares = runs
            .into_iter()
            .map(|(a, b)| {
                let mut end = self.layout.sim(&b);
                end.push(0);
                Compare::create_revision(self.layout.sim(&a), CompareOp::Equal, 0).with_range(end)
            })
            .collect();
        Ok((new, compares))
    }

    /// [`Shared::bundled_sims`] read SIM by SIM, with a compare for each.
    fn bundled_one_by_one(
        &self,
        candidates: Vec<Imsi>,
    ) -> Result<(HashSet<Imsi>, Vec<Compare>), StoreError> {
        let mut new = HashSet::new();
        for imsi in candidates {
            if self.cache.sim(&imsi)?.is_none()
                && self.cache.meta(&layout::tomb_meta(&imsi))?.is_none()
            {
                new.insert(imsi);
            }
        }
        if new.len() < BUNDLE_MIN {
            return Ok((HashSet::new(), Vec::new()));
        }
        let compares = new
            .iter()
            .map(|imsi| Compare::create_revision(self.layout.sim(imsi), CompareOp::Equal, 0))
            .collect();
        Ok((new, compares))
    }
}

/// Splits `candidates` (sorted) by `known` (sorted): the candidates not known, and the runs
/// `(first, last)` of them that no known IMSI falls within.
fn runs(candidates: &[Imsi], known: &[Imsi]) -> (Vec<Imsi>, Vec<(Imsi, Imsi)>) {
    let mut new = Vec::with_capacity(candidates.len());
    let mut runs: Vec<(Imsi, Imsi)> = Vec::new();
    let mut open: Option<(Imsi, Imsi)> = None;
    let mut known = known.iter().peekable();
    for &imsi in candidates {
        let mut is_known = false;
        while let Some(&&k) = known.peek() {
            if k > imsi {
                break;
            }
            known.next();
            runs.extend(open.take());
            is_known |= k == imsi;
        }
        if is_known {
            continue;
        }
        new.push(imsi);
        open = Some(open.map_or((imsi, imsi), |(a, _)| (a, imsi)));
    }
    runs.extend(open);
    (new, runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(n: u64) -> Imsi {
        Imsi::parse(format!("00101{n:010}").as_bytes()).unwrap()
    }

    #[test]
    fn known_imsis_split_the_runs_and_are_left_out() {
        let c: Vec<Imsi> = (1..=10).map(i).collect();
        // Nothing known: one run.
        assert_eq!(runs(&c, &[]), (c.clone(), vec![(i(1), i(10))]));
        // Known inside (one of them a candidate), before and after: split, left out.
        let known = [i(0), i(4), i(7), i(8), i(11)];
        let (new, r) = runs(&c, &known);
        assert_eq!(new, [1, 2, 3, 5, 6, 9, 10].map(i).to_vec());
        assert_eq!(r, vec![(i(1), i(3)), (i(5), i(6)), (i(9), i(10))]);
        // Known between two candidates that are not adjacent IMSIs.
        let c = [i(10), i(20), i(30)];
        let (new, r) = runs(&c, &[i(15)]);
        assert_eq!(new, c.to_vec());
        assert_eq!(r, vec![(i(10), i(10)), (i(20), i(30))]);
        // Every candidate known: nothing.
        assert_eq!(runs(&c, &c), (vec![], vec![]));
    }
}
