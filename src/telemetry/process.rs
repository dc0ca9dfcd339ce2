//! Process metrics under Prometheus' standard names, and the build information gauge.
//!
//! [`ProcessMetrics`] wraps [`metrics_process::Collector`]: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_virtual_memory_max_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds` and `process_threads`, read from `/proc/self` by
//! [`ProcessMetrics::collect`]. The daemon calls it on each scrape of `/metrics`, so the values
//! are as fresh as the scrape and nothing is read when nobody scrapes.
//!
//! This module runs no task and keeps no state between collections. `process_cpu_seconds_total`
//! counts whole seconds: `metrics` counters are integers, so the collector truncates (a
//! `rate()` over a few minutes is still exact to a fraction of a percent of a core).

use super::catalogue::BUILD_INFO;

/// The collector of the `process_*` metrics.
#[derive(Clone, Debug, Default)]
pub struct ProcessMetrics(metrics_process::Collector);

impl ProcessMetrics {
    /// Gives the `process_*` families their HELP text (see [`super::describe`]). Two are
    /// described here first (the first description of a name is the one kept) to say what the
    /// collector does: whole CPU seconds, and 0 for an unlimited address space.
    pub fn describe() {
        metrics::describe_counter!(
            "process_cpu_seconds_total",
            metrics::Unit::Seconds,
            "Total user and system CPU time spent in seconds (counted in whole seconds)."
        );
        metrics::describe_gauge!(
            "process_virtual_memory_max_bytes",
            metrics::Unit::Bytes,
            "Maximum amount of virtual memory available in bytes (the address-space limit; 0 \
             when unlimited)."
        );
        metrics_process::Collector::default().describe();
    }

    /// Reads the process's figures and sets the `process_*` series.
    pub fn collect(&self) {
        self.0.collect();
    }
}

/// `rustc --version` of the build (from build.rs), e.g. `1.90.0`.
pub const RUSTC_VERSION: &str = env!("IMEI_LOCKD_RUSTC_VERSION");

/// The build profile: `release` unless debug assertions are on.
pub const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The cargo features the library was built with, comma-separated (`none` without any).
pub const FEATURES: &str = if cfg!(feature = "rocksdb") {
    "rocksdb"
} else {
    "none"
};

/// Sets `imei_lockd_build_info{version,rustc,profile,features} 1`; `version` is the package's
/// (`imei-lockd --version`).
pub fn build_info() {
    metrics::gauge!(BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "rustc" => RUSTC_VERSION,
        "profile" => PROFILE,
        "features" => FEATURES)
    .set(1.0);
}
