//! AVPs (RFC 6733 §4): the [`Avp`] type, its constructors and encoding.
//!
//! # Format
//! ```text
//!     0                   1                   2                   3
//!     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                           AVP Code                            |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |V M P r r r r r|                  AVP Length                   |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                        Vendor-ID (opt)                        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |    Data ...
//!    +-+-+-+-+-+-+-+-+
//! ```
//! RFC 6733 §4.1: "AVP Length: The AVP Length field is three octets, and indicates the number
//! of octets in this AVP including the AVP Code field, AVP Length field, AVP Flags field,
//! Vendor-ID field (if present), and the AVP Data field. If a message is received with an
//! invalid attribute length, the message MUST be rejected." "Each AVP of type OctetString
//! MUST be padded to align on a 32-bit boundary ... the padding is not reflected in the AVP
//! Length field." §4.4: a Grouped AVP's data "is specified as a sequence of AVPs".
//!
//! Data is kept as raw bytes for every AVP, known or not, so a decoded message re-encodes to
//! the same bytes (padding is re-written as zeros). Grouped AVPs the dictionary knows (except
//! Failed-AVP, which is opaque) are walked at decode time only to check their structure
//! (depth-capped); [`Avp::children`] decodes them on demand. This module does not judge values against types: see
//! [`mod@super::validate`].
//!
//! # Layering
//! This module is the bottom of the codec: it depends only on the dictionary. Errors that name
//! an AVP ([`super::error::MessageError`]) are built on top of it; decoding AVPs
//! ([`super::avp_decode`]) and reading typed values ([`super::avp_read`]) sit above both, so
//! the modules form no import circle.

use std::net::IpAddr;

use super::dict::{self, AvpType};

/// Largest value of the 24-bit AVP Length field.
const MAX_AVP_LEN: usize = 0x00ff_ffff;

/// AVP flags (RFC 6733 §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AvpFlags(pub u8);

impl AvpFlags {
    /// V(endor-specific): a Vendor-ID field follows.
    pub const VENDOR: u8 = 0x80;
    /// M(andatory).
    pub const MANDATORY: u8 = 0x40;
    /// P (reserved for end-to-end security; accepted, never set by us).
    pub const PROTECTED: u8 = 0x20;
    /// The five reserved bits.
    pub const RESERVED: u8 = 0x1f;

    pub fn is_vendor(self) -> bool {
        self.0 & Self::VENDOR != 0
    }
    pub fn is_mandatory(self) -> bool {
        self.0 & Self::MANDATORY != 0
    }
}

/// One AVP. `data` excludes header and padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Avp {
    pub code: u32,
    /// Flags as received; on encode the V bit follows `vendor_id`.
    pub flags: AvpFlags,
    /// Present exactly when the V bit is set.
    pub vendor_id: Option<u32>,
    pub data: Vec<u8>,
}

impl Avp {
    /// An AVP with the flags the dictionary prescribes for sending (M as listed, V when
    /// `vendor` is non-zero).
    pub fn new(code: u32, vendor: u32, data: impl Into<Vec<u8>>) -> Self {
        let m = dict::lookup(code, vendor).is_none_or(|d| d.mandatory);
        let mut flags = if m { AvpFlags::MANDATORY } else { 0 };
        let vendor_id = (vendor != 0).then_some(vendor);
        if vendor_id.is_some() {
            flags |= AvpFlags::VENDOR;
        }
        Self {
            code,
            flags: AvpFlags(flags),
            vendor_id,
            data: data.into(),
        }
    }

    /// Unsigned32 / Enumerated / Integer32 bit pattern.
    pub fn u32(code: u32, vendor: u32, v: u32) -> Self {
        Self::new(code, vendor, v.to_be_bytes())
    }

    /// Unsigned64.
    pub fn u64(code: u32, vendor: u32, v: u64) -> Self {
        Self::new(code, vendor, v.to_be_bytes())
    }

    /// UTF8String / DiameterIdentity.
    pub fn utf8(code: u32, vendor: u32, s: &str) -> Self {
        Self::new(code, vendor, s.as_bytes())
    }

    /// Address (RFC 6733 §4.3.1: AddressType 1 = IPv4, 2 = IPv6, then the address).
    pub fn address(code: u32, vendor: u32, ip: IpAddr) -> Self {
        let mut d = Vec::with_capacity(18);
        match ip {
            IpAddr::V4(a) => {
                d.extend_from_slice(&1u16.to_be_bytes());
                d.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                d.extend_from_slice(&2u16.to_be_bytes());
                d.extend_from_slice(&a.octets());
            }
        }
        Self::new(code, vendor, d)
    }

    /// Grouped, from its children.
    ///
    /// # Errors
    /// [`EncodeError`] when a child is too long to encode.
    pub fn grouped(code: u32, vendor: u32, children: &[Avp]) -> Result<Self, EncodeError> {
        let mut d = Vec::new();
        for c in children {
            c.encode_into(&mut d)?;
        }
        Ok(Self::new(code, vendor, d))
    }

    /// Sets or clears the M bit.
    #[must_use]
    pub fn mandatory(mut self, on: bool) -> Self {
        self.flags = AvpFlags(if on {
            self.flags.0 | AvpFlags::MANDATORY
        } else {
            self.flags.0 & !AvpFlags::MANDATORY
        });
        self
    }

    /// The Vendor-ID, 0 when absent (RFC 6733 §4.1: 0 is the IETF space).
    pub fn vendor(&self) -> u32 {
        self.vendor_id.unwrap_or(0)
    }

    /// Same code, flags and vendor, other data.
    pub(crate) fn with_data(&self, data: Vec<u8>) -> Self {
        Self {
            code: self.code,
            flags: self.flags,
            vendor_id: self.vendor_id,
            data,
        }
    }

    /// Header length: 12 with a Vendor-ID, else 8.
    pub fn header_len(&self) -> usize {
        if self.vendor_id.is_some() {
            12
        } else {
            8
        }
    }

    /// AVP Length (header + data, no padding).
    pub fn len(&self) -> usize {
        self.header_len().saturating_add(self.data.len())
    }

    /// True when the AVP carries no data.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Appends the AVP with zero padding.
    ///
    /// # Errors
    /// [`EncodeError::AvpTooLong`] when the length exceeds 24 bits.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.len();
        if len > MAX_AVP_LEN {
            return Err(EncodeError::AvpTooLong {
                code: self.code,
                len,
            });
        }
        let flags = if self.vendor_id.is_some() {
            self.flags.0 | AvpFlags::VENDOR
        } else {
            self.flags.0 & !AvpFlags::VENDOR
        };
        out.extend_from_slice(&self.code.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        if let Some(v) = self.vendor_id {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out.resize(out.len() + padding(len), 0);
        Ok(())
    }

    /// Encodes; an over-long AVP (impossible for decoded ones) yields its header only.
    pub(crate) fn to_bytes_lossy(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() + 3);
        if self.encode_into(&mut out).is_err() {
            out.clear();
            let _ = self.with_data(Vec::new()).encode_into(&mut out);
        }
        out
    }
}

/// Padding after an AVP of `len` bytes.
pub(crate) fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Minimum data length of a type, for Failed-AVP payloads (RFC 6733 §7.5: "a zero-filled
/// payload of the minimum required length for the payloads data type").
pub(crate) fn min_data_len(code: u32, vendor: u32) -> usize {
    match dict::lookup(code, vendor).map(|d| d.ty) {
        Some(AvpType::Unsigned32 | AvpType::Integer32 | AvpType::Enumerated | AvpType::Time) => 4,
        Some(AvpType::Unsigned64 | AvpType::Integer64) => 8,
        Some(AvpType::Address) => 6,
        _ => 0,
    }
}

/// An AVP with the given code/vendor and a zero-filled minimum payload (Failed-AVP for missing
/// AVPs and unusable lengths).
pub fn placeholder(code: u32, flags: AvpFlags, vendor: u32) -> Avp {
    let vendor_id = (flags.is_vendor() || vendor != 0).then_some(vendor);
    Avp {
        code,
        flags,
        vendor_id,
        data: vec![0; min_data_len(code, vendor)],
    }
}

/// Encoding failed: a length does not fit its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An AVP's length exceeds the 24-bit AVP Length field.
    #[error("AVP {code} is too long to encode ({len} bytes)")]
    AvpTooLong {
        /// AVP code.
        code: u32,
        /// Its would-be length.
        len: usize,
    },
    /// The message exceeds the 24-bit Message Length field.
    #[error("message is too long to encode ({len} bytes)")]
    MessageTooLong {
        /// Its would-be length.
        len: usize,
    },
}
