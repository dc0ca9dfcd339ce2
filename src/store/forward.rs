//! [`forward_local_read_but_sim`]: the [`super::LocalRead`] methods a wrapping store passes on
//! to the store it wraps, written once.
//!
//! This module defines a macro only; it reads and writes nothing itself.

/// Inside `impl LocalRead for W`, where `W` wraps another store in field `$field`: every
/// [`LocalRead`] method except `sim`, passed on as it is (a wrapper writes its own `sim`, which
/// is where wrappers differ).
macro_rules! forward_local_read_but_sim {
    ($field:ident) => {
        fn sim_in_memory(&self, imsi: &$crate::context::Imsi) -> Option<$crate::store::SimRecord> {
            self.$field.sim_in_memory(imsi)
        }
        fn profile(
            &self,
            name: &str,
        ) -> Result<Option<$crate::store::ProfileRecord>, $crate::store::StoreError> {
            self.$field.profile(name)
        }
        fn sims_of_profile(
            &self,
            name: &str,
            after: Option<&$crate::context::Imsi>,
            limit: usize,
        ) -> Result<Vec<$crate::context::Imsi>, $crate::store::StoreError> {
            self.$field.sims_of_profile(name, after, limit)
        }
        fn scan_sims(
            &self,
            prefix: &str,
            after: Option<&$crate::context::Imsi>,
            limit: usize,
        ) -> Result<Vec<$crate::store::SimRecord>, $crate::store::StoreError> {
            self.$field.scan_sims(prefix, after, limit)
        }
        fn profiles(
            &self,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Vec<$crate::store::ProfileRecord>, $crate::store::StoreError> {
            self.$field.profiles(after, limit)
        }
        fn profile_member_count(&self, name: &str) -> Result<u64, $crate::store::StoreError> {
            self.$field.profile_member_count(name)
        }
        fn events(
            &self,
            imsi: &$crate::context::Imsi,
            limit: usize,
        ) -> Result<Vec<$crate::store::Event>, $crate::store::StoreError> {
            self.$field.events(imsi, limit)
        }
        fn expired_events(
            &self,
            before: $crate::store::Millis,
            after: Option<$crate::store::EventId>,
            scan: usize,
        ) -> Result<
            (Vec<$crate::store::EventId>, Option<$crate::store::EventId>),
            $crate::store::StoreError,
        > {
            self.$field.expired_events(before, after, scan)
        }
        fn request(
            &self,
            seq: u64,
        ) -> Result<Option<$crate::store::RequestRecord>, $crate::store::StoreError> {
            self.$field.request(seq)
        }
        fn requests_after(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<$crate::store::RequestRecord>, $crate::store::StoreError> {
            self.$field.requests_after(after, limit)
        }
        fn last_request_seq(&self) -> u64 {
            self.$field.last_request_seq()
        }
        fn charges(
            &self,
            month: &str,
        ) -> Result<Vec<$crate::store::Charge>, $crate::store::StoreError> {
            self.$field.charges(month)
        }
        fn charge(
            &self,
            month: &str,
            imsi: &$crate::context::Imsi,
        ) -> Result<Option<$crate::store::Charge>, $crate::store::StoreError> {
            self.$field.charge(month, imsi)
        }
        fn oldest_charge_month(&self) -> Result<Option<String>, $crate::store::StoreError> {
            self.$field.oldest_charge_month()
        }
        fn charges_page(
            &self,
            month: &str,
            after: Option<&$crate::context::Imsi>,
            limit: usize,
        ) -> Result<Vec<$crate::store::Charge>, $crate::store::StoreError> {
            self.$field.charges_page(month, after, limit)
        }
        fn outbox(
            &self,
            limit: usize,
        ) -> Result<Vec<(u64, $crate::store::OutboxEntry)>, $crate::store::StoreError> {
            self.$field.outbox(limit)
        }
        fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
            self.$field.meta(key)
        }
        fn approximate_counts(&self) -> $crate::store::StoreCounts {
            self.$field.approximate_counts()
        }
        fn checkpoint(
            &self,
            dir: &std::path::Path,
        ) -> Result<u64, $crate::store::checkpoint::CheckpointError> {
            self.$field.checkpoint(dir)
        }
    };
}
pub(crate) use forward_local_read_but_sim;
