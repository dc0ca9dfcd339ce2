//! Versioned value encoding.
//!
//! # Format
//! Every stored value is one version octet followed by the record in `postcard` (a compact,
//! documented, stable serde wire format). Version 1 is today's layout. A later release that changes
//! a record bumps the version it writes and keeps decoding every older version, converting as it
//! reads; it never reinterprets old bytes under a new layout.
//!
//! Decoding stored bytes is checked like wire input: a value from a newer release, or a damaged
//! one, is an error, never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version this release writes.
pub const CURRENT_VERSION: u8 = 1;

/// Why stored bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EncodingError {
    #[error("stored value is empty")]
    Empty,
    #[error("stored value has version {0}, this release reads up to {CURRENT_VERSION}")]
    UnknownVersion(u8),
    #[error("stored value is damaged: {0}")]
    Body(#[from] postcard::Error),
    /// A key or value of the cluster layout that is not what its kind says.
    #[error("stored key or value is malformed: {0}")]
    Malformed(String),
}

/// Encodes `value` at [`CURRENT_VERSION`].
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![CURRENT_VERSION];
    // Serializing our own records into a Vec cannot fail: no maps with non-string keys, no
    // sequences of unknown length.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "encoding a record failed");
            vec![CURRENT_VERSION]
        }
    }
}

/// Decodes a value written by this or an earlier release.
///
/// # Errors
/// [`EncodingError`] for an empty, newer or damaged value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EncodingError> {
    match bytes.split_first() {
        None => Err(EncodingError::Empty),
        Some((&1, body)) => {
            let (v, rest) = postcard::take_from_bytes(body)?;
            if !rest.is_empty() {
                return Err(EncodingError::Body(
                    postcard::Error::DeserializeUnexpectedEnd,
                ));
            }
            Ok(v)
        }
        Some((&v, _)) => Err(EncodingError::UnknownVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{ImeiManagement, SimRecord};

    fn sample() -> SimRecord {
        let mut s = SimRecord::new("001010000000001".parse().unwrap());
        s.msisdn = Some("491700000001".into());
        s.value = Some(ImeiManagement::Lock);
        s.bound = Some("35209900176148".parse().unwrap());
        s.bound_at = Some(1_700_000_000_000);
        s.rev = 7;
        s
    }

    #[test]
    fn roundtrip_and_version_octet() {
        let bytes = encode(&sample());
        assert_eq!(bytes.first(), Some(&CURRENT_VERSION));
        let back: SimRecord = decode(&bytes).unwrap();
        assert_eq!(back, sample());
    }

    /// Today's bytes, pinned: a later release must keep reading exactly these.
    #[test]
    fn version_1_layout_is_pinned() {
        let bytes = encode(&sample());
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "010f303031303130303030303030303031010c3439313730303030303030310001010194e6de8cdf80080180a0abfef962000007"
        );
    }

    #[test]
    fn newer_empty_and_damaged_values_are_errors() {
        assert!(matches!(
            decode::<SimRecord>(&[]),
            Err(EncodingError::Empty)
        ));
        assert!(matches!(
            decode::<SimRecord>(&[9, 1, 2]),
            Err(EncodingError::UnknownVersion(9))
        ));
        let bytes = encode(&sample());
        for cut in 1..bytes.len() {
            assert!(decode::<SimRecord>(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<SimRecord>(&longer).is_err());
    }
}
