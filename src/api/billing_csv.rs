//! The CSV form of `GET /v1/billing/{YYYY-MM}`, streamed: a blocking task reads the month's
//! charges from this node's store a page at a time ([`LocalRead::charges_page`]), writes each
//! page with [`csv::Writer`] and hands it to the response body through a small bounded
//! channel. A month of millions of rows never sits in memory: at most [`PAGES_AHEAD`] pages
//! are encoded ahead of the client, and a client that goes away stops the reading.
//!
//! The bytes are the ones the export always had: the header line, then one line per charge
//! `imsi,month,amount,currency,first_lock_at,lock,"<label>"`. Every field but the label is
//! validated on the way in (digits, `YYYY-MM`, a decimal amount, an ISO 4217 code, RFC 3339)
//! and never needs quoting; the label was always quoted, so the writer quotes nothing itself
//! and the label carries its quotes, made once by a quoting `csv::Writer`.
//!
//! This module does not choose between CSV and JSON and does not check the month (the route
//! in [`super::billing`] does).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use http_body::Frame;
use tokio::sync::mpsc;

use super::input::rfc3339;
use crate::context::Imsi;
use crate::store::{Charge, ImeiManagement, LocalRead, StoreError};

/// The CSV columns, in order.
pub(super) const CSV_HEADER: &str =
    "imsi,month,amount,currency,first_lock_at,imei_management,label";
/// Charges read and encoded per page.
const PAGE: usize = 1_000;
/// Encoded pages waiting for the client, at most.
const PAGES_AHEAD: usize = 4;

/// Why a streamed export stopped early (the client sees a cut-off body; the log says why).
#[derive(Debug, thiserror::Error)]
pub(super) enum ExportError {
    #[error("billing export: {0}")]
    Store(#[from] StoreError),
    #[error("billing export: CSV encoding: {0}")]
    Csv(String),
}

/// The label column: `label` quoted by csv (always).
fn quoted(label: &str) -> Result<String, ExportError> {
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record([label])
        .map_err(|e| ExportError::Csv(e.to_string()))?;
    let bytes = w
        .into_inner()
        .map_err(|e| ExportError::Csv(e.to_string()))?;
    let s = String::from_utf8(bytes).map_err(|e| ExportError::Csv(e.to_string()))?;
    Ok(s.trim_end_matches('\n').to_string())
}

/// Encodes `charges` (and the header line when `header`) as CSV lines.
///
/// # Errors
/// [`ExportError::Csv`] (the writer writes to memory: in practice never).
pub(super) fn encode_page(
    charges: &[Charge],
    header: bool,
    label: &str,
) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Never)
        .terminator(csv::Terminator::Any(b'\n'))
        .has_headers(false)
        .from_writer(Vec::with_capacity(charges.len() * 96 + 80));
    let err = |e: csv::Error| ExportError::Csv(e.to_string());
    if header {
        w.write_record(CSV_HEADER.split(',')).map_err(err)?;
    }
    for c in charges {
        let at = rfc3339(c.first_lock_at);
        w.write_record([
            c.imsi.as_str(),
            c.month.as_str(),
            c.amount.as_str(),
            c.currency.as_str(),
            at.as_str(),
            "lock",
            label,
        ])
        .map_err(err)?;
    }
    w.into_inner().map_err(|e| ExportError::Csv(e.to_string()))
}

/// Reads the month page by page and sends each encoded page; stops when the receiver is gone.
fn produce(
    reads: &dyn LocalRead,
    month: &str,
    tx: &mpsc::Sender<Result<Bytes, ExportError>>,
) -> Result<(), ExportError> {
    let label = quoted(ImeiManagement::Lock.label())?;
    let mut after: Option<Imsi> = None;
    let mut first = true;
    let mut rows = 0u64;
    loop {
        let page = reads.charges_page(month, after.as_ref(), PAGE)?;
        if page.is_empty() && !first {
            tracing::debug!(month, rows, "billing CSV export streamed");
            return Ok(());
        }
        let bytes = encode_page(&page, first, &label)?;
        first = false;
        rows += page.len() as u64;
        if tx.blocking_send(Ok(Bytes::from(bytes))).is_err() {
            tracing::info!(month, rows, "billing CSV export: client went away");
            return Ok(());
        }
        match page.last() {
            Some(last) if page.len() >= PAGE => after = Some(last.imsi),
            _ => return Ok(()),
        }
    }
}

/// The response body of the month's CSV, produced on a blocking thread as the client reads.
pub(super) fn stream(reads: Arc<dyn LocalRead>, month: String) -> Body {
    let (tx, rx) = mpsc::channel(PAGES_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = produce(&*reads, &month, &tx) {
            tracing::warn!(month, error = %e, "billing CSV export cut off");
            let _ = tx.blocking_send(Err(e));
        }
    });
    Body::new(ChannelBody { rx })
}

/// An HTTP body fed by a channel of chunks.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, ExportError>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = ExportError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ExportError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|r| r.map(Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(imsi: &str, at: i64) -> Charge {
        Charge {
            imsi: imsi.parse().unwrap(),
            month: "2026-11".into(),
            amount: "1.00".into(),
            currency: "EUR".into(),
            first_lock_at: at,
        }
    }

    /// The bytes the export had when it was built with `format!` (kept here as the reference).
    fn reference(charges: &[Charge]) -> String {
        let label = ImeiManagement::Lock.label();
        let mut out = format!("{CSV_HEADER}\n");
        for c in charges {
            out.push_str(&format!(
                "{},{},{},{},{},lock,\"{}\"\n",
                c.imsi,
                c.month,
                c.amount,
                c.currency,
                rfc3339(c.first_lock_at),
                label
            ));
        }
        out
    }

    #[test]
    fn pages_concatenate_to_the_bytes_of_the_format_built_export() {
        let charges: Vec<Charge> = (0..5)
            .map(|i| charge(&format!("00101000000000{i}"), 1_793_491_200_000 + i))
            .collect();
        let label = quoted(ImeiManagement::Lock.label()).unwrap();
        let mut out = encode_page(charges.get(..2).unwrap(), true, &label).unwrap();
        out.extend(encode_page(charges.get(2..).unwrap(), false, &label).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), reference(&charges));
        // An empty month: the header line alone.
        let empty = encode_page(&[], true, &label).unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), reference(&[]));
    }

    #[tokio::test]
    async fn the_stream_reads_every_page() {
        use http_body_util::BodyExt;
        let store = crate::store::memory::MemStore::new();
        let mut b = crate::store::Batch::new();
        let charges: Vec<Charge> = (0..2_345)
            .map(|i| charge(&format!("001010{i:09}"), 1_793_491_200_000))
            .collect();
        for c in &charges {
            b.push(crate::store::Op::PutCharge(c.clone()));
        }
        let store: Arc<crate::store::memory::MemStore> = Arc::new(store);
        crate::store::Ledger::commit(&*store, b, crate::store::Durability::Buffered)
            .await
            .unwrap();
        let body = stream(store, "2026-11".into());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8(bytes.to_vec()).unwrap(),
            reference(&charges)
        );
    }
}
