//! Unit tests of [`super`]: the chunking and the encoding of oversized requests.

use super::*;
use crate::context::Imsi;
use crate::store::{ImportRow, RequestRecord};

#[test]
fn chunks_keep_every_entry_in_order_within_both_limits() {
    let mut c = Chunker::new(3, 100);
    let mut chunks = Vec::new();
    let mut entries = Vec::new();
    for i in 0..20u8 {
        // Sizes 2..=61: some chunks close on bytes, others on count.
        let value = vec![i; usize::from(i) * 3];
        entries.push((vec![i, i], value.clone()));
        chunks.extend(c.push(vec![i, i], value));
    }
    chunks.extend(c.finish());
    for ch in &chunks {
        assert!(!ch.ops.is_empty() && ch.ops.len() <= 3, "{ch:?}");
        let bytes: usize = ch.ops.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert_eq!(bytes, ch.bytes);
        assert!(bytes <= 100 || ch.ops.len() == 1, "{bytes}");
    }
    let flat: Vec<_> = chunks.into_iter().flat_map(|c| c.ops).collect();
    assert_eq!(flat, entries);
    // One entry larger than the limit travels alone.
    let mut c = Chunker::new(3, 10);
    assert!(c.push(vec![1], vec![0; 5]).is_none());
    assert_eq!(c.push(vec![2], vec![0; 50]).unwrap().ops.len(), 1);
    assert_eq!(c.finish().unwrap().ops.len(), 1);
}

fn import_request(status: RequestStatus, rows: usize) -> RequestRecord {
    let imsi = Imsi::parse(b"001010000000001").unwrap();
    RequestRecord {
        seq: 9,
        op: Operation::Import {
            rows: vec![
                ImportRow {
                    imsi,
                    msisdn: Some("491700000000001".into()),
                    profile: Some("iot".into()),
                    value: None,
                };
                rows
            ],
        },
        status,
        error: None,
        submitted_at: 1,
        processed_at: Some(2),
    }
}

#[test]
fn a_large_processed_import_request_keeps_its_identity_without_rows() {
    let layout = Layout::new("/p");
    let big = import_request(RequestStatus::Processed, 60_000);
    assert!(encoding::encode(&big).len() > MAX_TXN_BYTES);
    let e = encode_record(&layout, Change::PutRequest(big.clone()))
        .unwrap()
        .unwrap();
    assert!(e.trimmed);
    assert_eq!(e.key, layout.request(9));
    let back: RequestRecord = encoding::decode(&e.value).unwrap();
    assert_eq!(
        back,
        RequestRecord {
            op: Operation::Import { rows: Vec::new() },
            ..big
        }
    );
    // A small one is written as it is.
    let small = import_request(RequestStatus::Processed, 3);
    let e = encode_record(&layout, Change::PutRequest(small.clone()))
        .unwrap()
        .unwrap();
    assert!(!e.trimmed);
    assert_eq!(encoding::decode::<RequestRecord>(&e.value).unwrap(), small);
    // A pending one cannot lose its rows.
    let pending = import_request(RequestStatus::Pending, 60_000);
    assert!(matches!(
        encode_record(&layout, Change::PutRequest(pending)),
        Err(ImportError::TooLarge { .. })
    ));
}
