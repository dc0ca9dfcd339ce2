//! Vendor-Specific attributes (type 26), and the 3GPP ones (vendor 10415) this daemon reads.
//!
//! # Format
//! RFC 2865 §5.26:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |  Length       |            Vendor-Id
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!      Vendor-Id (cont)           |  String...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! > Length >= 7 […] The String field is one or more octets. The actual format of the information
//! > is site or application specific […] It SHOULD be encoded as a sequence of vendor type /
//! > vendor length / value fields.
//!
//! 3GPP TS 29.061 §16.4.7 uses that recommended layout (Vendor-Type 1 octet, Vendor-Length 1
//! octet counting itself and the type, then the value). Other vendors may not (some use 2- or
//! 4-octet types), so only vendor 10415 is parsed into sub-attributes; the others are skipped.
//!
//! Sub-attributes read here (TS 29.061 §16.4.7):
//!
//! | type | name | value |
//! |---|---|---|
//! | 1 | 3GPP-IMSI | UTF-8 digits, 1–15 |
//! | 20 | 3GPP-IMEISV | IMEI(SV) in any form of SPEC §1.3 (TS says 14–16 ASCII digits) |
//! | 21 | 3GPP-RAT-Type | one octet |

use crate::radius::encode::EncodeError;

/// IANA enterprise number of 3GPP.
pub const VENDOR_3GPP: u32 = 10415;
/// 3GPP-IMSI (TS 29.061 §16.4.7, sub-attribute 1).
pub const TGPP_IMSI: u8 = 1;
/// 3GPP-IMEISV (TS 29.061 §16.4.7, sub-attribute 20).
pub const TGPP_IMEISV: u8 = 20;
/// 3GPP-RAT-Type (TS 29.061 §16.4.7, sub-attribute 21).
pub const TGPP_RAT_TYPE: u8 = 21;

/// Why a Vendor-Specific attribute is malformed. In a request, every variant means: silently
/// discard (label `malformed_vsa`), except [`VsaError::WrongVendor`], which only tells a caller
/// that asked for 3GPP that the VSA belongs to someone else.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VsaError {
    #[error("Vendor-Specific value of {0} octets is too short (RFC 2865: Length >= 7)")]
    TooShort(usize),
    #[error("Vendor-Specific attribute of vendor {0}, expected 3GPP (10415)")]
    WrongVendor(u32),
    #[error("vendor sub-attribute header at offset {offset} is truncated")]
    SubAttributeHeaderTruncated { offset: usize },
    #[error("vendor sub-attribute {typ} at offset {offset} has length {length} (< 2)")]
    SubAttributeLengthTooSmall { offset: usize, typ: u8, length: u8 },
    #[error("vendor sub-attribute {typ} at offset {offset} with length {length} overruns the VSA")]
    SubAttributeOverrun { offset: usize, typ: u8, length: u8 },
}

impl VsaError {
    /// Stable label for the drop counter.
    pub fn label(&self) -> &'static str {
        match self {
            Self::WrongVendor(_) => "wrong_vendor",
            _ => "malformed_vsa",
        }
    }
}

/// A Vendor-Specific attribute value split into Vendor-Id and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vsa<'a> {
    pub vendor_id: u32,
    /// The String field (vendor sub-attributes for 3GPP).
    pub data: &'a [u8],
}

impl<'a> Vsa<'a> {
    /// Splits the value of a type-26 attribute.
    ///
    /// # Errors
    /// [`VsaError::TooShort`] when there is no Vendor-Id or no String octet (RFC 2865: Length ≥ 7,
    /// so the value is ≥ 5 octets).
    pub fn parse(value: &'a [u8]) -> Result<Self, VsaError> {
        match value.split_first_chunk::<4>() {
            Some((id, data)) if !data.is_empty() => Ok(Self {
                vendor_id: u32::from_be_bytes(*id),
                data,
            }),
            _ => Err(VsaError::TooShort(value.len())),
        }
    }

    /// The vendor sub-attributes, assuming the RFC 2865 recommended layout.
    ///
    /// # Errors
    /// [`VsaError`] when a sub-attribute is shorter than 2 octets or runs past the VSA. Checks
    /// the whole chain before returning, so a truncated last sub-attribute is an error even when
    /// the caller only wants the first.
    pub fn sub_attributes(&self) -> Result<SubAttributes<'a>, VsaError> {
        let mut offset = 0;
        while let Some((_, next)) = read_sub(self.data, offset)? {
            offset = next;
        }
        Ok(SubAttributes {
            data: self.data,
            offset: 0,
        })
    }
}

/// One vendor sub-attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubAttribute<'a> {
    pub typ: u8,
    pub value: &'a [u8],
}

/// Iterator over checked sub-attributes (see [`Vsa::sub_attributes`]); stops rather than panics.
#[derive(Clone, Debug)]
pub struct SubAttributes<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for SubAttributes<'a> {
    type Item = SubAttribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match read_sub(self.data, self.offset) {
            Ok(Some((sub, next))) => {
                self.offset = next;
                Some(sub)
            }
            Ok(None) | Err(_) => {
                self.offset = self.data.len();
                None
            }
        }
    }
}

fn read_sub(data: &[u8], offset: usize) -> Result<Option<(SubAttribute<'_>, usize)>, VsaError> {
    let rest = match data.get(offset..) {
        Some(r) if !r.is_empty() => r,
        _ => return Ok(None),
    };
    let [typ, length, ..] = *rest else {
        return Err(VsaError::SubAttributeHeaderTruncated { offset });
    };
    if length < 2 {
        return Err(VsaError::SubAttributeLengthTooSmall {
            offset,
            typ,
            length,
        });
    }
    let value = rest
        .get(2..usize::from(length))
        .ok_or(VsaError::SubAttributeOverrun {
            offset,
            typ,
            length,
        })?;
    Ok(Some((
        SubAttribute { typ, value },
        offset + usize::from(length),
    )))
}

/// Parses a type-26 value as a 3GPP VSA and returns its checked sub-attributes.
///
/// # Errors
/// [`VsaError::WrongVendor`] for another vendor's VSA; the other [`VsaError`]s when it is
/// malformed.
pub fn parse_3gpp(value: &[u8]) -> Result<SubAttributes<'_>, VsaError> {
    let vsa = Vsa::parse(value)?;
    if vsa.vendor_id != VENDOR_3GPP {
        return Err(VsaError::WrongVendor(vsa.vendor_id));
    }
    vsa.sub_attributes()
}

/// Encodes one Vendor-Specific value (Vendor-Id then sub-attributes), to be sent as attribute 26.
///
/// # Errors
/// [`EncodeError::AttributeTooLong`] when a sub-attribute value exceeds 253 octets or the whole
/// VSA value exceeds 253 octets.
pub fn encode_vsa(vendor_id: u32, subs: &[(u8, &[u8])]) -> Result<Vec<u8>, EncodeError> {
    let mut out = vendor_id.to_be_bytes().to_vec();
    for &(typ, value) in subs {
        let len = u8::try_from(value.len() + 2).map_err(|_| EncodeError::AttributeTooLong {
            typ,
            len: value.len(),
        })?;
        out.extend([typ, len]);
        out.extend_from_slice(value);
    }
    if out.len() > crate::radius::codec::MAX_ATTRIBUTE_VALUE_LEN {
        return Err(EncodeError::AttributeTooLong {
            typ: crate::radius::attr::VENDOR_SPECIFIC,
            len: out.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_3gpp_imsi_from_radclient_bytes() {
        // From the radclient capture: 1a 17 | 00 00 28 af | 01 11 "001010000000001".
        let value = b"\x00\x00\x28\xaf\x01\x11001010000000001";
        let subs: Vec<_> = parse_3gpp(value).unwrap().collect();
        assert_eq!(
            subs,
            [SubAttribute {
                typ: TGPP_IMSI,
                value: b"001010000000001"
            }]
        );
    }

    #[test]
    fn several_sub_attributes_in_one_vsa() {
        let v = encode_vsa(VENDOR_3GPP, &[(1, b"12345"), (21, &[6]), (99, b"")]).unwrap();
        let subs: Vec<_> = parse_3gpp(&v).unwrap().collect();
        assert_eq!(subs.len(), 3);
        assert_eq!(
            subs[1],
            SubAttribute {
                typ: 21,
                value: &[6]
            }
        );
        assert_eq!(subs[2].value, b"");
    }

    #[test]
    fn malformed_vsas() {
        let cases: &[(&[u8], VsaError)] = &[
            (b"", VsaError::TooShort(0)),
            (b"\x00\x00\x28", VsaError::TooShort(3)),
            (b"\x00\x00\x28\xaf", VsaError::TooShort(4)),
            (
                b"\x00\x00\x28\xaf\x01",
                VsaError::SubAttributeHeaderTruncated { offset: 0 },
            ),
            (
                b"\x00\x00\x28\xaf\x01\x00",
                VsaError::SubAttributeLengthTooSmall {
                    offset: 0,
                    typ: 1,
                    length: 0,
                },
            ),
            (
                b"\x00\x00\x28\xaf\x01\x01",
                VsaError::SubAttributeLengthTooSmall {
                    offset: 0,
                    typ: 1,
                    length: 1,
                },
            ),
            (
                b"\x00\x00\x28\xaf\x01\x06123",
                VsaError::SubAttributeOverrun {
                    offset: 0,
                    typ: 1,
                    length: 6,
                },
            ),
            // Good first sub-attribute, truncated second.
            (
                b"\x00\x00\x28\xaf\x15\x03\x06\x14\x09ab",
                VsaError::SubAttributeOverrun {
                    offset: 3,
                    typ: 20,
                    length: 9,
                },
            ),
            (
                b"\x00\x00\x28\xaf\x15\x03\x06\x14",
                VsaError::SubAttributeHeaderTruncated { offset: 3 },
            ),
        ];
        for (value, err) in cases {
            assert_eq!(parse_3gpp(value).err().as_ref(), Some(err), "{value:02x?}");
            assert_eq!(err.label(), "malformed_vsa");
        }
    }

    #[test]
    fn other_vendor_is_not_3gpp() {
        // Cisco (9) with a 3GPP-looking sub-attribute.
        let v = encode_vsa(9, &[(1, b"001010000000001")]).unwrap();
        assert_eq!(parse_3gpp(&v).err(), Some(VsaError::WrongVendor(9)));
        // A vendor with a non-RFC layout is still split into id + data.
        let vsa = Vsa::parse(b"\x00\x00\x01\x37\x00\x00\x00\x01xyz").unwrap();
        assert_eq!(vsa.vendor_id, 311);
        assert_eq!(vsa.data.len(), 7);
    }

    #[test]
    fn encode_limits() {
        assert!(encode_vsa(VENDOR_3GPP, &[(1, &[0u8; 247])]).is_ok());
        assert!(encode_vsa(VENDOR_3GPP, &[(1, &[0u8; 248])]).is_err());
        assert!(encode_vsa(VENDOR_3GPP, &[(1, &[0u8; 254])]).is_err());
    }
}
