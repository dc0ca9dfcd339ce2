//! `imei-lockctl export --format csv|json [--output FILE]`: every SIM with its state, read page
//! by page through `GET /v1/sims` (1000 a page, following `next_cursor`) and written as each
//! page arrives: never the whole set in memory.
//!
//! # Format
//! Columns (CSV) or keys (JSON), in this order ([`imei_lockd::api::EXPORT_HEADER`]): `imsi`,
//! `msisdn`, `profile`, `imei_management` (the SIM's own value; empty or null when it follows
//! its profile) — the columns `POST /v1/sims:import` reads, so the file imports as is — then
//! the state: `effective`, `bound_imei`, `bound_at`, `last_seen_imei`, `last_seen_at`.
//! CSV has a header line and empty cells for absent values (written with the `csv` crate).
//! JSON is NDJSON: one object per line, `null` for absent values, no enclosing array (so it
//! streams, and `jq -c`, `grep` and `split` work on it line by line).
//!
//! The walk is the list's: a SIM that exists throughout the export is written exactly once,
//! one created or deleted meanwhile at most once. It is no point-in-time copy (that is
//! `backup create`). With `--output`, the file appears only once complete (written as
//! `FILE.partial`, then renamed).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use imei_lockd::api::EXPORT_HEADER;
use serde_json::Value;

use super::{Api, Failure, PAGE};

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// csv: a header line and the import's columns first; json: one JSON object per line
    /// (NDJSON).
    #[arg(long, value_enum)]
    format: Format,
    /// Write to this file (created once complete) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Csv,
    Json,
}

/// Rows as they come, in either format.
enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Json(W),
}

impl<W: Write> Sink<W> {
    fn new(format: Format, w: W) -> Result<Self, Failure> {
        Ok(match format {
            Format::Csv => {
                let mut c = csv::Writer::from_writer(w);
                c.write_record(EXPORT_HEADER).map_err(write_failed)?;
                Self::Csv(Box::new(c))
            }
            Format::Json => Self::Json(w),
        })
    }

    fn row(&mut self, sim: &Value) -> Result<(), Failure> {
        match self {
            Self::Csv(c) => c
                .write_record(EXPORT_HEADER.iter().map(|k| cell(sim.get(*k))))
                .map_err(write_failed),
            Self::Json(w) => {
                let obj: serde_json::Map<String, Value> = EXPORT_HEADER
                    .iter()
                    .map(|k| ((*k).to_owned(), sim.get(*k).cloned().unwrap_or(Value::Null)))
                    .collect();
                serde_json::to_writer(&mut *w, &obj).map_err(write_failed)?;
                w.write_all(b"\n").map_err(write_failed)
            }
        }
    }

    fn finish(self) -> Result<(), Failure> {
        match self {
            Self::Csv(mut c) => c.flush().map_err(write_failed),
            Self::Json(mut w) => w.flush().map_err(write_failed),
        }
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn write_failed(e: impl std::fmt::Display) -> Failure {
    Failure(1, format!("writing the export: {e}"))
}

/// Walks every page into `sink`; returns the number of SIMs written.
fn walk<W: Write>(api: &Api, mut sink: Sink<W>) -> Result<u64, Failure> {
    let mut cursor: Option<String> = None;
    let mut n = 0u64;
    loop {
        let mut q = vec![("limit", PAGE.to_string())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = api.json(api.req(reqwest::Method::GET, "/v1/sims").query(&q))?;
        for sim in page
            .get("items")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            sink.row(sim)?;
            n += 1;
        }
        cursor = page
            .get("next_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    sink.finish()?;
    Ok(n)
}

pub(crate) fn run(api: &Api, args: ExportArgs) -> Result<(), Failure> {
    let Some(path) = args.output else {
        let out = std::io::BufWriter::new(std::io::stdout().lock());
        walk(api, Sink::new(args.format, out)?)?;
        return Ok(());
    };
    let mut partial = path.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .map_err(|e| Failure(2, format!("cannot create {}: {e}", partial.display())))?;
    let written =
        Sink::new(args.format, std::io::BufWriter::new(file)).and_then(|sink| walk(api, sink));
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &path)
        .map_err(|e| Failure(1, format!("cannot rename to {}: {e}", path.display())))?;
    eprintln!("exported {n} SIMs to {}", path.display());
    Ok(())
}
