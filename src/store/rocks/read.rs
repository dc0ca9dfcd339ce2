//! [`LocalRead`] of the embedded store: point reads through the SIM cache and the buffered
//! last-seen, prefix scans of the column families.
//!
//! This file writes nothing (see [`super::write`]).

use rocksdb::{Direction, IteratorMode};

use std::sync::atomic::Ordering;

use super::{backend, be_u64, corrupt, decode, sim_key_after, RocksStore};
use super::{CF_BILLING, CF_EVENTS, CF_MEMBERS, CF_META, CF_OUTBOX, CF_REQUESTS, CF_SIMS};
use crate::context::Imsi;
use crate::store::{
    encoding, keys, profiles_page, Charge, Event, EventId, LocalRead, Millis, OutboxEntry,
    ProfileRecord, RequestRecord,
};
use crate::store::{SimRecord, StoreCounts, StoreError};

impl LocalRead for RocksStore {
    fn checkpoint(
        &self,
        dir: &std::path::Path,
    ) -> Result<u64, crate::store::checkpoint::CheckpointError> {
        self.write_checkpoint(dir)
    }

    fn sim(&self, imsi: &Imsi) -> Result<Option<SimRecord>, StoreError> {
        let inner = &*self.inner;
        Ok(inner.cached_sim(imsi)?.map(|sim| inner.with_seen(sim)))
    }

    fn sim_in_memory(&self, imsi: &Imsi) -> Option<SimRecord> {
        let inner = &*self.inner;
        if inner.sim_cache_per_shard == 0 {
            return None;
        }
        let sim = inner.cache_shard(imsi).read().get(imsi).cloned()?;
        Some(inner.with_seen(sim))
    }

    fn profile(&self, name: &str) -> Result<Option<ProfileRecord>, StoreError> {
        Ok(self.inner.profiles.read().get(name).cloned())
    }

    fn sims_of_profile(
        &self,
        name: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Imsi>, StoreError> {
        let prefix = keys::member_prefix(name);
        let start = match after {
            Some(i) => keys::member(name, i),
            None => prefix.clone(),
        };
        let cf = self.inner.cf(CF_MEMBERS)?;
        let mut out = Vec::new();
        let it = self
            .inner
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (k, _) = item.map_err(backend)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if after.is_some() && *k == *start {
                continue;
            }
            let raw = k.get(prefix.len()..).unwrap_or_default();
            let imsi = Imsi::parse(raw).map_err(|_| corrupt(&k, encoding::EncodingError::Empty))?;
            out.push(imsi);
        }
        Ok(out)
    }

    fn scan_sims(
        &self,
        prefix: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<SimRecord>, StoreError> {
        let inner = &*self.inner;
        // Start at the prefix or just after `after`, whichever is later in key order.
        let after_key = sim_key_after(after);
        let start: &[u8] = if after_key.as_slice() > prefix.as_bytes() {
            &after_key
        } else {
            prefix.as_bytes()
        };
        let rows = inner.prefix_scan::<SimRecord>(CF_SIMS, prefix.as_bytes(), start, limit + 1)?;
        Ok(rows
            .into_iter()
            .filter(|(k, _)| after.is_none() || **k != *after_key)
            .take(limit)
            .map(|(_, v)| inner.with_seen(v))
            .collect())
    }

    fn profiles(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProfileRecord>, StoreError> {
        Ok(profiles_page(
            self.inner.profiles.read().values(),
            after,
            limit,
        ))
    }

    fn profile_member_count(&self, name: &str) -> Result<u64, StoreError> {
        let prefix = keys::member_prefix(name);
        let cf = self.inner.cf(CF_MEMBERS)?;
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_range(rocksdb::PrefixRange(prefix.as_slice()));
        let mut it = self.inner.db.raw_iterator_cf_opt(&cf, opts);
        it.seek(&prefix);
        let mut n = 0u64;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status().map_err(backend)?;
        Ok(n)
    }

    fn events(&self, imsi: &Imsi, limit: usize) -> Result<Vec<Event>, StoreError> {
        let cf = self.inner.cf(CF_EVENTS)?;
        let prefix = keys::event_prefix(imsi);
        let mut end = prefix.clone();
        end.extend_from_slice(&[0xff; 12]);
        let mut out = Vec::new();
        let it = self
            .inner
            .db
            .iterator_cf(&cf, IteratorMode::From(&end, Direction::Reverse));
        for item in it {
            let (k, v) = item.map_err(backend)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    fn expired_events(
        &self,
        before: Millis,
        after: Option<EventId>,
        scan: usize,
    ) -> Result<(Vec<EventId>, Option<EventId>), StoreError> {
        let cf = self.inner.cf(CF_EVENTS)?;
        let start = match after {
            Some(a) => {
                let counter = u32::try_from(a.counter).unwrap_or(u32::MAX);
                let mut k = keys::event(&a.imsi, a.at, counter);
                k.push(0); // just after `a`
                k
            }
            None => Vec::new(),
        };
        let mut expired = Vec::new();
        let mut last = None;
        let it = self
            .inner
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward));
        for (seen, item) in it.enumerate() {
            let (k, _) = item.map_err(backend)?;
            if seen == scan {
                // One more exists: go on from the last one scanned.
                return Ok((expired, last));
            }
            let Some(id) = keys::parse_event(&k) else {
                metrics::counter!("imei_lockd_store_errors_total", "kind" => "corrupt")
                    .increment(1);
                continue;
            };
            if id.at < before {
                expired.push(id);
            }
            last = Some(id);
        }
        Ok((expired, None))
    }

    fn last_request_seq(&self) -> u64 {
        self.inner
            .next_request
            .load(Ordering::SeqCst)
            .saturating_sub(1)
    }

    fn request(&self, seq: u64) -> Result<Option<RequestRecord>, StoreError> {
        let cf = self.inner.cf(CF_REQUESTS)?;
        let key = seq.to_be_bytes();
        match self.inner.db.get_pinned_cf(&cf, key).map_err(backend)? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn requests_after(&self, after: u64, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        Ok(self
            .inner
            .prefix_scan::<RequestRecord>(CF_REQUESTS, b"", &start, limit)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    fn charges(&self, month: &str) -> Result<Vec<Charge>, StoreError> {
        let prefix = keys::charge_prefix(month);
        Ok(self
            .inner
            .prefix_scan::<Charge>(CF_BILLING, &prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    fn charges_page(
        &self,
        month: &str,
        after: Option<&Imsi>,
        limit: usize,
    ) -> Result<Vec<Charge>, StoreError> {
        let prefix = keys::charge_prefix(month);
        let start = match after {
            // The first key after `after`'s: its key with a 0 byte appended.
            Some(imsi) => {
                let mut k = keys::charge(month, imsi);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        Ok(self
            .inner
            .prefix_scan::<Charge>(CF_BILLING, &prefix, &start, limit)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    fn charge(&self, month: &str, imsi: &Imsi) -> Result<Option<Charge>, StoreError> {
        let cf = self.inner.cf(CF_BILLING)?;
        let key = keys::charge(month, imsi);
        match self.inner.db.get_pinned_cf(&cf, &key).map_err(backend)? {
            Some(v) => decode(&key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn oldest_charge_month(&self) -> Result<Option<String>, StoreError> {
        let cf = self.inner.cf(CF_BILLING)?;
        let mut it = self.inner.db.iterator_cf(&cf, IteratorMode::Start);
        let Some(item) = it.next() else {
            return Ok(None);
        };
        let (k, _) = item.map_err(backend)?;
        let month = k.split(|&b| b == b'/').next().unwrap_or_default();
        match std::str::from_utf8(month) {
            Ok(m) if !m.is_empty() => Ok(Some(m.to_owned())),
            _ => Err(corrupt(&k, encoding::EncodingError::Empty)),
        }
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        Ok(self
            .inner
            .prefix_scan::<OutboxEntry>(CF_OUTBOX, b"", b"", limit)?
            .into_iter()
            .filter_map(|(k, e)| Some((be_u64(&k)?, e)))
            .collect())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let cf = self.inner.cf(CF_META)?;
        self.inner.db.get_cf(&cf, key).map_err(backend)
    }

    fn approximate_counts(&self) -> StoreCounts {
        let prop = |cf: &str, name: &str| -> u64 {
            self.inner
                .cf(cf)
                .ok()
                .and_then(|h| self.inner.db.property_int_value_cf(&h, name).ok().flatten())
                .unwrap_or(0)
        };
        // Every file of the data directory (SST files, WAL, manifest, options): what the store
        // holds on disk, including what is not yet compacted into SST files.
        let disk = std::fs::read_dir(self.inner.db.path())
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(std::fs::Metadata::is_file)
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        StoreCounts {
            sims: prop(CF_SIMS, "rocksdb.estimate-num-keys"),
            events: prop(CF_EVENTS, "rocksdb.estimate-num-keys"),
            outbox: prop(CF_OUTBOX, "rocksdb.estimate-num-keys"),
            disk_bytes: disk,
        }
    }
}
