//! `[retention]`: how long events, provisioning requests and billing rows are kept before the
//! node holding the retention singleton deletes them (0: kept forever).
//!
//! Only the keys, their defaults and their checks live here (the deleting is
//! [`crate::retention`]'s). `cluster.event_retention_days`, the older key for events, stays
//! accepted: it applies when `retention.events_days` is not set, and [`RetentionConfig::events`]
//! says so, for the daemon to warn at start.

use serde::{Deserialize, Serialize};

use super::cluster::ClusterConfig;
use super::{invalid, ConfigError};

/// Default of `events_days` (and of `cluster.event_retention_days` before it).
pub const DEFAULT_EVENTS_DAYS: u64 = 90;
/// Most days a retention in days may be (100 years).
pub const MAX_DAYS: u64 = 36_500;
/// Most months `billing_months` may be (100 years).
pub const MAX_MONTHS: u64 = 1_200;

/// `[retention]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Events older than this many days are deleted (0: never). Absent:
    /// `cluster.event_retention_days` if set, else [`DEFAULT_EVENTS_DAYS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_days: Option<u64>,
    /// Settled (processed or failed) provisioning requests older than this many days are
    /// deleted, never the newest request (0: never). Default 90.
    pub requests_days: u64,
    /// Billing rows of months more than this many months before the current one are deleted
    /// (0: never). Default 36: billing rows are financial records.
    pub billing_months: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            events_days: None,
            requests_days: 90,
            billing_months: 36,
        }
    }
}

/// Where the events' retention comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsFrom {
    /// `retention.events_days`.
    Retention,
    /// `cluster.event_retention_days` (the older key; `retention.events_days` is not set).
    Cluster,
    /// Neither is set: [`DEFAULT_EVENTS_DAYS`].
    Default,
}

impl RetentionConfig {
    /// Checks the ranges, naming the key.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let days = format!("must be 0 (keep forever) to {MAX_DAYS} days");
        if let Some(d) = self.events_days {
            if d > MAX_DAYS {
                return Err(invalid("retention.events_days", days));
            }
        }
        if self.requests_days > MAX_DAYS {
            return Err(invalid("retention.requests_days", days));
        }
        if self.billing_months > MAX_MONTHS {
            return Err(invalid(
                "retention.billing_months",
                format!("must be 0 (keep forever) to {MAX_MONTHS} months"),
            ));
        }
        Ok(())
    }

    /// Days events are kept (0: forever), and which key said so.
    pub fn events(&self, cluster: &ClusterConfig) -> (u64, EventsFrom) {
        match (self.events_days, cluster.event_retention_days) {
            (Some(d), _) => (d, EventsFrom::Retention),
            (None, Some(d)) => (d, EventsFrom::Cluster),
            (None, None) => (DEFAULT_EVENTS_DAYS, EventsFrom::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(key: &str, f: impl FnOnce(&mut RetentionConfig)) {
        let mut c = RetentionConfig::default();
        f(&mut c);
        let e = c.validate().expect_err(key).to_string();
        assert!(e.contains(key), "{e}");
    }

    #[test]
    fn defaults_and_ranges() {
        let c = RetentionConfig::default();
        assert_eq!(
            (c.events_days, c.requests_days, c.billing_months),
            (None, 90, 36)
        );
        c.validate().unwrap();
        let forever = RetentionConfig {
            events_days: Some(0),
            requests_days: 0,
            billing_months: 0,
        };
        forever.validate().unwrap();
        let most = RetentionConfig {
            events_days: Some(MAX_DAYS),
            requests_days: MAX_DAYS,
            billing_months: MAX_MONTHS,
        };
        most.validate().unwrap();
        refused("retention.events_days", |c| {
            c.events_days = Some(MAX_DAYS + 1)
        });
        refused("retention.requests_days", |c| {
            c.requests_days = MAX_DAYS + 1
        });
        refused("retention.billing_months", |c| {
            c.billing_months = MAX_MONTHS + 1
        });
    }

    #[test]
    fn the_older_cluster_key_applies_only_when_events_days_is_not_set() {
        let mut cluster = ClusterConfig::default();
        let mut r = RetentionConfig::default();
        assert_eq!(r.events(&cluster), (90, EventsFrom::Default));
        cluster.event_retention_days = Some(30);
        assert_eq!(r.events(&cluster), (30, EventsFrom::Cluster));
        r.events_days = Some(7);
        assert_eq!(r.events(&cluster), (7, EventsFrom::Retention));
        r.events_days = Some(0);
        assert_eq!(r.events(&cluster), (0, EventsFrom::Retention));
    }
}
