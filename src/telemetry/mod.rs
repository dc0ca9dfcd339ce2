//! Metrics plumbing shared by every subsystem.
//!
//! - [`catalogue`]: every metric family with its type, unit and HELP text; [`describe`] hands
//!   them to the recorder at daemon start.
//! - [`process`]: `process_*` metrics under Prometheus' standard names ([`ProcessMetrics`]) and
//!   `imei_lockd_build_info` ([`build_info`]).
//! - [`Handles`]: metric handles cached by their label values, for the hot paths.
//!
//! Series known at start are registered at 0 by their own subsystem, in one function each, so
//! dashboards and alerts see 0 rather than no data: [`crate::engine::register_metrics`],
//! [`crate::radius::series`], [`crate::diameter::server::series`],
//! [`crate::provisioning::Provisioner::new`], [`crate::alerts::AlertDelivery::new`], the store
//! ([`crate::store::register_metrics`]) and the daemon (config reloads, API 401s). This module
//! does not count anything itself and installs no recorder (the daemon does).
//!
//! # Handles
//!
//! `metrics::counter!(name, labels…)` builds a key and looks it up in the recorder's registry
//! on every call: about a thousand instructions, several times per request on the hot paths.
//! A [`Handles`] keeps the handle of each label combination met so far (registered on first
//! use, like the macro does), so a hot-path increment is a read-locked hash lookup and an
//! atomic add. Label combinations are small finite sets (a port and a RADIUS code, an
//! interface and a reason, an application and a Result-Code), so the map stays small.

pub mod catalogue;
pub mod process;

pub use catalogue::describe;
pub use process::{build_info, ProcessMetrics};

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::LazyLock;

use parking_lot::RwLock;

type Map<K, H> = RwLock<HashMap<K, H, foldhash::fast::RandomState>>;

/// Handles (`metrics::Counter`, `metrics::Histogram`, …) by label key `K`.
pub struct Handles<K, H> {
    map: LazyLock<Map<K, H>>,
}

impl<K: Copy + Eq + Hash, H> Handles<K, H> {
    pub const fn new() -> Self {
        Self {
            map: LazyLock::new(|| RwLock::new(HashMap::default())),
        }
    }

    /// Runs `f` on the handle of `key`, registering it with `register` the first time.
    pub fn with(&self, key: K, register: impl FnOnce(K) -> H, f: impl FnOnce(&H)) {
        if let Some(h) = self.map.read().get(&key) {
            f(h);
            return;
        }
        let mut map = self.map.write();
        f(map.entry(key).or_insert_with(|| register(key)));
    }
}

impl<K: Copy + Eq + Hash, H> Default for Handles<K, H> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn registers_once_per_key() {
        let h: Handles<(u8, &str), u32> = Handles::new();
        let registered = Cell::new(0);
        let mut seen = Vec::new();
        for key in [(1, "a"), (1, "a"), (2, "a"), (1, "b"), (1, "a")] {
            h.with(
                key,
                |(n, s)| {
                    registered.set(registered.get() + 1);
                    u32::from(n) * 10 + s.len() as u32
                },
                |v| seen.push(*v),
            );
        }
        assert_eq!(registered.get(), 3);
        assert_eq!(seen, vec![11, 11, 21, 11, 11]);
    }
}
