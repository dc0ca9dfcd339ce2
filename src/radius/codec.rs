//! RADIUS framing: the 20-octet header and the attribute TLVs, decoded as a borrowed view of the
//! datagram. No copies, no secrets, no semantics: [`crate::radius::request`] authenticates and
//! checks the attributes this daemon reads.
//!
//! # Format
//! RFC 2865 §3:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Code      |  Identifier   |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Authenticator (16 octets)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attributes ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-
//! ```
//!
//! > The minimum length is 20 and maximum length is 4096. […] Octets outside the range of the
//! > Length field MUST be treated as padding and ignored on reception. If the packet is shorter
//! > than the Length field indicates, it MUST be silently discarded.
//!
//! RFC 2865 §5 (attributes):
//!
//! ```text
//!  0                   1                   2
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |    Length     |  Value ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! > The Length field is one octet, and indicates the length of this Attribute including the Type,
//! > Length and Value fields. If an Attribute is received in an […] with an invalid Length, the
//! > entire request SHOULD be silently discarded.
//!
//! Here an attribute of length 0 or 1, or one that runs past the Length field, is an error; an
//! attribute of length 2 (empty value) is legal framing. RFC 2865 requires Length ≥ 3 for every
//! text/string attribute, so [`crate::radius::request`] rejects length 2 for the attributes this
//! daemon reads and ignores it for the others (as FreeRADIUS does).

use std::fmt;

/// Octets in the header (Code, Identifier, Length, Authenticator): also the minimum packet length.
pub const HEADER_LEN: usize = 20;
/// RFC 2865 §3: "The minimum length is 20 and maximum length is 4096."
pub const MAX_PACKET_LEN: usize = 4096;
/// Largest attribute value: the Length octet counts Type and Length too (255 − 2).
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 253;

/// The 16-octet Request or Response Authenticator.
pub type Authenticator = [u8; 16];

/// Packet type (RFC 2865 §3, RFC 2866 §3, RFC 5997 §2). Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    AccessRequest,
    AccessAccept,
    AccessReject,
    AccountingRequest,
    AccountingResponse,
    AccessChallenge,
    StatusServer,
    StatusClient,
    /// Any other value (CoA, Disconnect, reserved …): never served by this daemon.
    Other(u8),
}

impl Code {
    /// From the wire octet.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::AccessRequest,
            2 => Self::AccessAccept,
            3 => Self::AccessReject,
            4 => Self::AccountingRequest,
            5 => Self::AccountingResponse,
            11 => Self::AccessChallenge,
            12 => Self::StatusServer,
            13 => Self::StatusClient,
            other => Self::Other(other),
        }
    }

    /// The wire octet.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::AccessRequest => 1,
            Self::AccessAccept => 2,
            Self::AccessReject => 3,
            Self::AccountingRequest => 4,
            Self::AccountingResponse => 5,
            Self::AccessChallenge => 11,
            Self::StatusServer => 12,
            Self::StatusClient => 13,
            Self::Other(v) => v,
        }
    }

    /// Name as in the RFCs (for logs).
    pub fn name(self) -> &'static str {
        match self {
            Self::AccessRequest => "Access-Request",
            Self::AccessAccept => "Access-Accept",
            Self::AccessReject => "Access-Reject",
            Self::AccountingRequest => "Accounting-Request",
            Self::AccountingResponse => "Accounting-Response",
            Self::AccessChallenge => "Access-Challenge",
            Self::StatusServer => "Status-Server",
            Self::StatusClient => "Status-Client",
            Self::Other(_) => "Other",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(v) => write!(f, "Code-{v}"),
            c => f.write_str(c.name()),
        }
    }
}

/// Why a datagram is not a well-framed RADIUS packet. Every variant means: silently discard
/// (RFC 2865 §3, §5) and count under [`DecodeError::label`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} octets is shorter than the 20-octet RADIUS header")]
    ShortDatagram(usize),
    #[error("Length field {0} is below the 20-octet minimum")]
    LengthBelowMinimum(u16),
    #[error("Length field {0} exceeds the 4096-octet maximum")]
    LengthAboveMaximum(u16),
    #[error("Length field {length} exceeds the {datagram} octets received")]
    LengthBeyondDatagram { length: u16, datagram: usize },
    #[error("attribute header at offset {offset} is truncated")]
    AttributeHeaderTruncated { offset: usize },
    #[error("attribute type {typ} at offset {offset} has length {length} (< 2)")]
    AttributeLengthTooSmall { offset: usize, typ: u8, length: u8 },
    #[error("attribute type {typ} at offset {offset} with length {length} overruns the packet")]
    AttributeOverrun { offset: usize, typ: u8, length: u8 },
}

impl DecodeError {
    /// Stable label for the drop counter.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ShortDatagram(_) => "short_datagram",
            Self::LengthBelowMinimum(_) | Self::LengthAboveMaximum(_) => "bad_length",
            Self::LengthBeyondDatagram { .. } => "truncated_packet",
            Self::AttributeHeaderTruncated { .. }
            | Self::AttributeLengthTooSmall { .. }
            | Self::AttributeOverrun { .. } => "malformed_attribute",
        }
    }
}

/// One attribute, borrowed from the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Attribute type (RFC 2865 §5).
    pub typ: u8,
    /// Value octets (Length − 2 of them; may be empty).
    pub value: &'a [u8],
    /// Offset of the Type octet from the start of the packet.
    pub offset: usize,
}

impl Attribute<'_> {
    /// Offset of the first value octet from the start of the packet.
    pub fn value_offset(&self) -> usize {
        self.offset + 2
    }
}

/// A well-framed RADIUS packet: header checked, every attribute TLV inside the Length field.
///
/// Holds only the octets covered by the Length field (padding after it is dropped, RFC 2865 §3).
/// Nothing is authenticated yet: see [`crate::radius::request::Request`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    bytes: &'a [u8],
    code: Code,
    identifier: u8,
    authenticator: Authenticator,
}

impl<'a> Packet<'a> {
    /// Frames a received datagram.
    ///
    /// # Errors
    /// [`DecodeError`] when the datagram is shorter than the header, the Length field is outside
    /// 20..=4096 or beyond the datagram, or an attribute is shorter than 2 octets or overruns the
    /// Length field. Every error means "silently discard".
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let (head, authenticator) = match datagram {
            [c, i, l0, l1, rest @ ..] => ([*c, *i, *l0, *l1], rest.first_chunk::<16>()),
            _ => return Err(DecodeError::ShortDatagram(datagram.len())),
        };
        let authenticator = *authenticator.ok_or(DecodeError::ShortDatagram(datagram.len()))?;
        let [code, identifier, l0, l1] = head;
        let length = u16::from_be_bytes([l0, l1]);
        if usize::from(length) < HEADER_LEN {
            return Err(DecodeError::LengthBelowMinimum(length));
        }
        if usize::from(length) > MAX_PACKET_LEN {
            return Err(DecodeError::LengthAboveMaximum(length));
        }
        let bytes =
            datagram
                .get(..usize::from(length))
                .ok_or(DecodeError::LengthBeyondDatagram {
                    length,
                    datagram: datagram.len(),
                })?;
        let mut offset = HEADER_LEN;
        while let Some((_, next)) = read_attribute(bytes, offset)? {
            offset = next;
        }
        Ok(Self {
            bytes,
            code: Code::from_u8(code),
            identifier,
            authenticator,
        })
    }

    /// The Code octet.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The Identifier octet.
    pub fn identifier(&self) -> u8 {
        self.identifier
    }

    /// The Authenticator field as received.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The packet's octets (exactly Length of them).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The Length field.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a packet has at least its header. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// All attributes in wire order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }

    /// The first attribute of a type.
    pub fn find(&self, typ: u8) -> Option<Attribute<'a>> {
        self.attributes().find(|a| a.typ == typ)
    }
}

impl fmt::Debug for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("code", &self.code)
            .field("identifier", &self.identifier)
            .field("length", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Iterator over a [`Packet`]'s attributes.
///
/// The packet was fully framed by [`Packet::decode`], so the iterator never meets a bad TLV; if it
/// did, it would stop rather than panic.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        match read_attribute(self.bytes, self.offset) {
            Ok(Some((attr, next))) => {
                self.offset = next;
                Some(attr)
            }
            Ok(None) | Err(_) => {
                self.offset = self.bytes.len();
                None
            }
        }
    }
}

/// Reads the attribute at `offset` of `packet`; `Ok(None)` at the end.
fn read_attribute(
    packet: &[u8],
    offset: usize,
) -> Result<Option<(Attribute<'_>, usize)>, DecodeError> {
    let rest = match packet.get(offset..) {
        Some(r) if !r.is_empty() => r,
        _ => return Ok(None),
    };
    let [typ, length, ..] = *rest else {
        return Err(DecodeError::AttributeHeaderTruncated { offset });
    };
    if length < 2 {
        return Err(DecodeError::AttributeLengthTooSmall {
            offset,
            typ,
            length,
        });
    }
    let value = rest
        .get(2..usize::from(length))
        .ok_or(DecodeError::AttributeOverrun {
            offset,
            typ,
            length,
        })?;
    Ok(Some((
        Attribute { typ, value, offset },
        offset + usize::from(length),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(code: u8, id: u8, len: u16) -> Vec<u8> {
        let mut v = vec![code, id];
        v.extend(len.to_be_bytes());
        v.extend([0xAA; 16]);
        v
    }

    fn with_attrs(attrs: &[u8]) -> Vec<u8> {
        let mut v = header(1, 7, (HEADER_LEN + attrs.len()) as u16);
        v.extend(attrs);
        v
    }

    #[test]
    fn header_only_packet() {
        let raw = header(1, 9, 20);
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.code(), Code::AccessRequest);
        assert_eq!(p.identifier(), 9);
        assert_eq!(p.authenticator(), &[0xAA; 16]);
        assert_eq!(p.attributes().count(), 0);
        assert_eq!(p.len(), 20);
    }

    #[test]
    fn attributes_in_order_with_offsets() {
        let raw = with_attrs(&[1, 5, b'a', b'b', b'c', 80, 2, 31, 3, b'9']);
        let p = Packet::decode(&raw).unwrap();
        let attrs: Vec<_> = p.attributes().collect();
        assert_eq!(attrs.len(), 3);
        assert_eq!(
            (attrs[0].typ, attrs[0].value, attrs[0].offset),
            (1, &b"abc"[..], 20)
        );
        assert_eq!(
            (attrs[1].typ, attrs[1].value, attrs[1].offset),
            (80, &b""[..], 25)
        );
        assert_eq!((attrs[2].typ, attrs[2].value), (31, &b"9"[..]));
        assert_eq!(attrs[2].value_offset(), 29);
        assert_eq!(p.find(31).unwrap().value, b"9");
        assert!(p.find(44).is_none());
    }

    #[test]
    fn octets_past_length_are_padding() {
        let mut raw = with_attrs(&[1, 3, b'x']);
        raw.extend([0xFF, 0x00, 0x01]); // would be a bad attribute if read
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.len(), 23);
        assert_eq!(p.attributes().count(), 1);
    }

    #[test]
    fn header_errors() {
        assert_eq!(Packet::decode(&[]), Err(DecodeError::ShortDatagram(0)));
        assert_eq!(
            Packet::decode(&header(1, 0, 20)[..19]),
            Err(DecodeError::ShortDatagram(19))
        );
        assert_eq!(
            Packet::decode(&header(1, 0, 19)),
            Err(DecodeError::LengthBelowMinimum(19))
        );
        assert_eq!(
            Packet::decode(&header(1, 0, 0)),
            Err(DecodeError::LengthBelowMinimum(0))
        );
        let mut big = header(1, 0, 4097);
        big.resize(5000, 0);
        assert_eq!(
            Packet::decode(&big),
            Err(DecodeError::LengthAboveMaximum(4097))
        );
        assert_eq!(
            Packet::decode(&header(1, 0, 21)),
            Err(DecodeError::LengthBeyondDatagram {
                length: 21,
                datagram: 20
            })
        );
        let mut max = header(1, 0, 4096);
        max.resize(4096, 0);
        // 4076 octets of zeros: type 0 length 0 is a bad attribute, but the length is accepted.
        assert_eq!(
            Packet::decode(&max),
            Err(DecodeError::AttributeLengthTooSmall {
                offset: 20,
                typ: 0,
                length: 0
            })
        );
    }

    #[test]
    fn largest_packet_decodes() {
        let mut attrs = Vec::new();
        while attrs.len() + 255 <= MAX_PACKET_LEN - HEADER_LEN {
            attrs.extend([26, 255]);
            attrs.extend([0u8; 253]);
        }
        let pad = MAX_PACKET_LEN - HEADER_LEN - attrs.len();
        attrs.extend([18, pad as u8]);
        attrs.resize(MAX_PACKET_LEN - HEADER_LEN, b'x');
        let raw = with_attrs(&attrs);
        let p = Packet::decode(&raw).unwrap();
        assert_eq!(p.len(), MAX_PACKET_LEN);
        assert_eq!(p.attributes().count(), 16);
    }

    #[test]
    fn attribute_errors() {
        for (attrs, err) in [
            (
                &[1u8][..],
                DecodeError::AttributeHeaderTruncated { offset: 20 },
            ),
            (
                &[1, 0][..],
                DecodeError::AttributeLengthTooSmall {
                    offset: 20,
                    typ: 1,
                    length: 0,
                },
            ),
            (
                &[1, 1][..],
                DecodeError::AttributeLengthTooSmall {
                    offset: 20,
                    typ: 1,
                    length: 1,
                },
            ),
            (
                &[1, 4, b'a'][..],
                DecodeError::AttributeOverrun {
                    offset: 20,
                    typ: 1,
                    length: 4,
                },
            ),
            (
                &[1, 3, b'a', 31, 9, b'1'][..],
                DecodeError::AttributeOverrun {
                    offset: 23,
                    typ: 31,
                    length: 9,
                },
            ),
            (
                &[1, 3, b'a', 31][..],
                DecodeError::AttributeHeaderTruncated { offset: 23 },
            ),
        ] {
            assert_eq!(
                Packet::decode(&with_attrs(attrs)),
                Err(err.clone()),
                "{attrs:?}"
            );
            assert_eq!(err.label(), "malformed_attribute");
        }
    }

    #[test]
    fn overrun_hidden_by_padding_is_caught() {
        // The attribute fits in the datagram but not in the Length field.
        let mut raw = with_attrs(&[1, 3, b'a']);
        raw.extend([b'b', b'c']);
        raw[21] = 5; // attribute length 5 crosses the Length field (23)
        assert!(matches!(
            Packet::decode(&raw),
            Err(DecodeError::AttributeOverrun { .. })
        ));
    }

    #[test]
    fn codes_roundtrip() {
        for v in 0..=255u8 {
            assert_eq!(Code::from_u8(v).as_u8(), v);
        }
        assert_eq!(Code::from_u8(12), Code::StatusServer);
        assert_eq!(Code::from_u8(40).to_string(), "Code-40");
        assert_eq!(Code::AccountingResponse.to_string(), "Accounting-Response");
    }
}
