//! The catalogue of every metric family the daemon exports, with its type, unit and HELP text.
//!
//! [`describe`] hands the catalogue to the installed recorder (the Prometheus exporter renders
//! each description as the family's `# HELP` line); the daemon calls it once at start, before
//! `/metrics` serves. A unit test reads `src/` and fails on a metric name that is not listed
//! here, so a new metric cannot ship without HELP text.
//!
//! This module does not register any series (each subsystem registers its own at 0, see
//! [`crate::telemetry`]), does not count anything and does not rename anything: the names are
//! the SPEC §3 contract and the units are metadata only (the exporter's unit suffixes are off).

use metrics::Unit;

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its name (as exported), type, unit and HELP text.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> Family {
    Family {
        name,
        kind,
        unit,
        help,
    }
}

use Kind::{Counter, Gauge, Histogram};

const COUNT: Option<Unit> = Some(Unit::Count);
const SECONDS: Option<Unit> = Some(Unit::Seconds);
const BYTES: Option<Unit> = Some(Unit::Bytes);

/// The name of the build information gauge ([`crate::telemetry::build_info`]).
pub const BUILD_INFO: &str = "imei_lockd_build_info";

/// Every `imei_lockd_*` family. The process metrics (`process_*`) are described by
/// [`metrics_process`], see [`crate::telemetry::ProcessMetrics`].
pub const FAMILIES: &[Family] = &[
    // Cluster store (src/store/etcd/): present with cluster.backend = "etcd" only.
    family(
        "imei_lockd_etcd_request_duration_seconds",
        Histogram,
        SECONDS,
        "Time of each etcd request by operation (txn, get, put, lease); failures also count in \
         imei_lockd_store_errors_total{kind=\"backend\"}.",
    ),
    family(
        "imei_lockd_etcd_unsent_retries_total",
        Counter,
        COUNT,
        "etcd requests (transactions, reads, watch opens, lease grants) sent again because the \
         client could not connect to the member it picked (a member down or cut off): the \
         request never left this node.",
    ),
    family(
        "imei_lockd_cache_rebuilds_total",
        Counter,
        COUNT,
        "Rebuilds of this node's cache from one consistent etcd read, by reason: start (no \
         position), compacted (etcd compacted past the position), gap (a watch event did not \
         continue the cached revision).",
    ),
    family(
        "imei_lockd_eir_answers_total",
        Counter,
        COUNT,
        "Equipment checks answered by the EIR (interface s13 or n5g_eir), by status \
         (whitelisted, blacklisted, greylisted, unknown) and cause (lock: the lock judged the \
         device; unknown_sim, missing_imsi, malformed_imei: the [eir] policy of that name).",
    ),
    // N5g-eir (src/n5g_eir/).
    family(
        "imei_lockd_n5g_requests_total",
        Counter,
        COUNT,
        "N5g-eir requests answered, by HTTP status code (200 a status; 404 equipment unknown or \
         no such resource; 400 bad query; 401 bad token; 405; 414; 500; 503 not serving or \
         busy).",
    ),
    family(
        "imei_lockd_n5g_request_duration_seconds",
        Histogram,
        SECONDS,
        "Time N5g-eir took to answer one request, from its head received to its answer built.",
    ),
    family(
        "imei_lockd_n5g_errors_total",
        Counter,
        COUNT,
        "N5g-eir connections closed by a limit, by reason (idle_timeout: no request completed \
         within eir.n5g.idle_timeout_s; too_many_connections).",
    ),
    family(
        "imei_lockd_events_expired_total",
        Counter,
        COUNT,
        "Events deleted because they were older than retention.events_days (formerly \
         cluster.event_retention_days), by the node holding the retention singleton; also \
         counted in imei_lockd_retention_deleted_total{kind=\"events\"}.",
    ),
    family(
        "imei_lockd_retention_deleted_total",
        Counter,
        COUNT,
        "Records deleted by retention, by kind: events (older than retention.events_days), \
         requests (settled provisioning requests older than retention.requests_days) and \
         billing (rows of months before the current month minus retention.billing_months).",
    ),
    family(
        "imei_lockd_cluster_evictions_total",
        Counter,
        COUNT,
        "Leases of other nodes this node revoked because they stayed behind a processed change \
         for longer than cluster.max_lag_ms while saying they serve (they stop serving until \
         caught up).",
    ),
    family(
        "imei_lockd_cache_verifications_total",
        Counter,
        COUNT,
        "Comparisons of this node's cache with a read of etcd at the same revision \
         (POST /v1/cluster/verify), by result: equal or different (a bug: the log names the \
         record families that differ).",
    ),
    family(
        "imei_lockd_cluster_applied_revision",
        Gauge,
        None,
        "The etcd revision this node's cache has applied; compare across nodes (and with \
         etcd's) for watch lag.",
    ),
    family(
        "imei_lockd_cluster_serving",
        Gauge,
        None,
        "1 while this node answers sessions (lease valid, cache caught up), 0 while it does not \
         (RADIUS unanswered, Diameter 3004).",
    ),
    // Engine (src/engine.rs).
    family(
        "imei_lockd_decisions_total",
        Counter,
        COUNT,
        "IMEI lock decisions by interface (radius, gx, s6b, s13, n5g_eir), decision (accept, reject) and \
         reason (the lock table's row: disabled, paired, pairing_no_imei, bound, match, \
         imei_mismatch, missing_imei_accepted, missing_imei, unknown_sim_accepted, unknown_sim, \
         session_continues).",
    ),
    family(
        "imei_lockd_decision_duration_seconds",
        Histogram,
        SECONDS,
        "Time the engine took to decide one request, store reads and writes included, by \
         interface.",
    ),
    family(
        "imei_lockd_imei_malformed_total",
        Counter,
        COUNT,
        "Requests whose IMEI was malformed and treated as none presented, by interface.",
    ),
    family(
        "imei_lockd_engine_errors_total",
        Counter,
        COUNT,
        "Requests the engine could not decide (store error, compare-and-swap retries \
         exhausted), by interface: RADIUS drops them (reason engine_error), Diameter answers \
         5012.",
    ),
    family(
        "imei_lockd_not_serving_total",
        Counter,
        COUNT,
        "Session requests not answered because this node was not serving (cluster mode: lease \
         not valid by the monotonic clock, or cache catching up), by interface: RADIUS sends no \
         answer, Diameter answers 3004. Always 0 on the embedded store.",
    ),
    family(
        "imei_lockd_bind_commits_total",
        Counter,
        COUNT,
        "Writes of a binding (first bind, pairing rebind) by outcome: committed, lost_compare \
         (another session or a request changed the SIM first; judged again) or unknown (a \
         timeout across an etcd leader change; read back and judged again).",
    ),
    // RADIUS (src/radius/server.rs).
    family(
        "imei_lockd_radius_packets_total",
        Counter,
        COUNT,
        "RADIUS datagrams received, by port (auth, acct) and code (the RADIUS name of the first \
         octet; Other for codes not served).",
    ),
    family(
        "imei_lockd_radius_responses_total",
        Counter,
        COUNT,
        "RADIUS answers sent, by port and type (access_accept, access_reject, \
         accounting_response, status); answers replayed to duplicates are not included.",
    ),
    family(
        "imei_lockd_radius_drops_total",
        Counter,
        COUNT,
        "RADIUS datagrams dropped without an answer, by port and reason (receive_buffer: the \
         kernel's socket buffer was full; overload: evaluations at their bound; unknown_client; \
         malformed or unauthenticated packets; engine_error; ...).",
    ),
    family(
        "imei_lockd_radius_duplicates_total",
        Counter,
        COUNT,
        "RADIUS retransmissions answered from the duplicate cache (RFC 5080), by port.",
    ),
    family(
        "imei_lockd_radius_recv_buffer_bytes",
        Gauge,
        BYTES,
        "Kernel receive buffer granted to each RADIUS socket, by port; below \
         radius.recv_buffer_bytes when net.core.rmem_max caps it (see the start-up warning).",
    ),
    // Diameter (src/diameter/server/).
    family(
        "imei_lockd_diameter_peers",
        Gauge,
        COUNT,
        "Diameter connections by state: wait_cer (connected, no CER yet), open, suspect (a \
         watchdog request unanswered), closing.",
    ),
    family(
        "imei_lockd_diameter_peer_up",
        Gauge,
        None,
        "1 while the configured Diameter peer (origin_host: its Origin-Host in lowercase) has an \
         open connection, else 0; every configured peer is present from start.",
    ),
    family(
        "imei_lockd_diameter_answers_total",
        Counter,
        COUNT,
        "Diameter answers sent, by application (gx, s6b, s13, base; other: an application not served) and Result-Code (none: the answer \
         carries none); 5003 is a lock reject, 3004 too busy, 5012 an engine failure.",
    ),
    family(
        "imei_lockd_diameter_errors_total",
        Counter,
        COUNT,
        "Diameter connection and message errors by reason (decode, error_answer, \
         message_timeout, too_busy, duplicate, watchdog_expired, cer_rejected, \
         connection_limit, ...).",
    ),
    family(
        "imei_lockd_s6b_identities_total",
        Counter,
        COUNT,
        "S6b AARs by the form of their User-Name (form: imsi, eap_aka_permanent, \
         eap_sim_permanent, eap_aka_prime_permanent, the pseudonym and fast_reauth forms of each \
         method, no_imsi) and decorated (true for homerealm!user@otherrealm); pseudonym and \
         fast_reauth AARs are answered DIAMETER_USER_UNKNOWN, \
         imei_lockd_diameter_answers_total{result_code=\"5030\"}.",
    ),
    // REST API (src/api/).
    family(
        "imei_lockd_api_refused_total",
        Counter,
        COUNT,
        "REST API requests refused by a handler or the router, by HTTP status (400 bad input, \
         404 unknown SIM/profile/request/route, 405, 415); the log line names the field.",
    ),
    family(
        "imei_lockd_api_errors_total",
        Counter,
        COUNT,
        "REST API requests cut off by a limit, by reason (header_timeout, body_timeout, \
         body_too_large).",
    ),
    family(
        "imei_lockd_api_unauthorized_total",
        Counter,
        COUNT,
        "REST API requests refused with 401: missing or wrong bearer token.",
    ),
    // Backups (src/api/backups.rs, src/backup/).
    family(
        "imei_lockd_backups_total",
        Counter,
        COUNT,
        "Online backups asked for with POST /v1/backups, by result: created, refused (cluster \
         mode: back up etcd instead), failed (the log line says why).",
    ),
    family(
        "imei_lockd_backup_last_success_timestamp_seconds",
        Gauge,
        SECONDS,
        "Unix time of the newest backup under node.backup_dir (at start) or taken since (0: \
         none).",
    ),
    // Secrets and TLS (src/config/secrets.rs, src/tls.rs).
    family(
        "imei_lockd_api_token_weak",
        Gauge,
        None,
        "1 while the API runs with the shipped example token (change-me), or without a token on \
         a non-loopback address; 0 otherwise. Set at start and on every reload.",
    ),
    family(
        "imei_lockd_tls_reloads_total",
        Counter,
        COUNT,
        "TLS certificate reloads on SIGHUP by listener (api, metrics, n5g_eir) and result: ok, error (the \
         files did not load; new connections keep the running certificate).",
    ),
    family(
        "imei_lockd_tls_handshake_failures_total",
        Counter,
        COUNT,
        "TLS handshakes that failed on an HTTPS listener, by listener (api, metrics, n5g_eir) and reason: \
         error (e.g. a plain-HTTP client), timeout, overload (too many handshakes at once).",
    ),
    // Provisioning (src/provisioning/).
    family(
        "imei_lockd_provisioning_requests_total",
        Counter,
        COUNT,
        "Provisioning requests by status: submitted (accepted, 202), processed, failed \
         (refused when applied, e.g. an unknown profile).",
    ),
    family(
        "imei_lockd_provisioning_pending",
        Gauge,
        COUNT,
        "Provisioning requests accepted and not yet processed.",
    ),
    family(
        "imei_lockd_provisioning_bulk_sims_total",
        Counter,
        COUNT,
        "SIMs in the bulk batches provisioning committed (an import's chunks, a profile \
         change's fan-out, a month roll-over), counted as each batch commits: its rate is an \
         import's progress. A batch written again after a failed attempt counts again.",
    ),
    // Alerts (src/alerts.rs).
    family(
        "imei_lockd_alerts_total",
        Counter,
        COUNT,
        "Alert webhook deliveries by result: delivered, failed (retried with backoff), \
         suppressed (inside the webhook's min_interval_s for that SIM), dropped (given up after \
         300 attempts).",
    ),
    family(
        "imei_lockd_alert_outbox_depth",
        Gauge,
        COUNT,
        "Alerts in the durable outbox waiting for delivery (read up to 1024 per pass, so at most \
         1024).",
    ),
    family(
        "imei_lockd_alert_deliveries_total",
        Counter,
        COUNT,
        "Alert POSTs per webhook (label webhook: its name) by outcome: delivered (2xx), \
         http_error (another status), timeout (timeout_ms passed), connect_error (no TCP or TLS \
         connection), transport_error (the exchange broke).",
    ),
    family(
        "imei_lockd_alert_circuit_state",
        Gauge,
        None,
        "Circuit of each webhook: 0 closed (delivering), 1 half-open (one probe out), 2 open \
         (nothing sent until circuit_cooldown_s has passed).",
    ),
    // Daemon (src/bin/imei-lockd.rs).
    family(
        "imei_lockd_config_reloads_total",
        Counter,
        COUNT,
        "SIGHUP configuration reloads by result: ok, error (the file did not load; the running \
         configuration was kept).",
    ),
    family(
        BUILD_INFO,
        Gauge,
        None,
        "Always 1; the labels describe the running binary (version, rustc, profile, features).",
    ),
    // Store (src/store/, sampled by the daemon every 10 s).
    family(
        "imei_lockd_store_sims",
        Gauge,
        COUNT,
        "SIMs in the store (RocksDB estimate, refreshed every 10 s).",
    ),
    family(
        "imei_lockd_store_events",
        Gauge,
        COUNT,
        "Events in the store (RocksDB estimate, refreshed every 10 s).",
    ),
    family(
        "imei_lockd_store_outbox",
        Gauge,
        COUNT,
        "Alert outbox entries in the store (RocksDB estimate, refreshed every 10 s).",
    ),
    family(
        "imei_lockd_store_disk_bytes",
        Gauge,
        BYTES,
        "Size of every file of the data directory (SST files, WAL, manifest), refreshed every \
         10 s.",
    ),
    family(
        "imei_lockd_store_errors_total",
        Counter,
        COUNT,
        "Store operations that failed, by kind: backend (RocksDB returned an error), corrupt (a \
         stored value did not decode).",
    ),
];

/// Describes every family of [`FAMILIES`] and the process metrics to the installed recorder.
/// Call once, after the recorder is installed and before `/metrics` serves.
pub fn describe() {
    for f in FAMILIES {
        match (f.kind, f.unit) {
            (Counter, Some(u)) => metrics::describe_counter!(f.name, u, f.help),
            (Counter, None) => metrics::describe_counter!(f.name, f.help),
            (Gauge, Some(u)) => metrics::describe_gauge!(f.name, u, f.help),
            (Gauge, None) => metrics::describe_gauge!(f.name, f.help),
            (Histogram, Some(u)) => metrics::describe_histogram!(f.name, u, f.help),
            (Histogram, None) => metrics::describe_histogram!(f.name, f.help),
        }
    }
    super::ProcessMetrics::describe();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn names() -> BTreeSet<&'static str> {
        FAMILIES.iter().map(|f| f.name).collect()
    }

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        assert_eq!(names().len(), FAMILIES.len(), "a family is listed twice");
        for f in FAMILIES {
            assert!(f.name.starts_with("imei_lockd_"), "{}", f.name);
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                f.name
            );
            // Prometheus: counters end in _total, nothing else does.
            assert_eq!(f.kind == Counter, f.name.ends_with("_total"), "{}", f.name);
            if f.unit == SECONDS {
                assert!(f.name.contains("_seconds"), "{}", f.name);
            }
            if f.unit == BYTES {
                assert!(f.name.ends_with("_bytes"), "{}", f.name);
            }
            assert!(f.help.ends_with('.') && f.help.len() > 20, "{}", f.name);
            assert!(
                !f.help.contains('\n') && !f.help.contains("  "),
                "{}",
                f.name
            );
        }
    }

    /// Every `"imei_lockd_…"` string literal under `src/` names a family of the catalogue.
    #[test]
    fn every_metric_in_the_source_is_described() {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        assert!(files.len() > 20, "{files:?}");
        let known = names();
        let mut seen = BTreeSet::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for (i, _) in text.match_indices("\"imei_lockd_") {
                let rest = &text[i + 1..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                // A whole string literal that is a name (not the bare prefix, not a path).
                if rest[end..].starts_with('"') && name != "imei_lockd_" {
                    assert!(
                        known.contains(name),
                        "{}: metric {name} has no entry in telemetry::catalogue::FAMILIES",
                        file.display()
                    );
                    seen.insert(name.to_owned());
                }
            }
        }
        assert!(
            seen.len() >= 20,
            "the scan found too few metric names: {seen:?}"
        );
    }
}
