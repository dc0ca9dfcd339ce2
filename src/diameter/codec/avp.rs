//! AVPs (RFC 6733 §4): decoding through a checked cursor, encoding, typed accessors.
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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::dict::{self, AvpType};
use super::error::{EncodeError, MessageError};
use super::header::Decoder;
use super::reader::Reader;

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

    /// Unsigned32, Enumerated (and Integer32 bits) value.
    ///
    /// # Errors
    /// [`MessageError::InvalidAvpLength`] (5014) unless the data is 4 bytes.
    pub fn as_u32(&self) -> Result<u32, MessageError> {
        let b: [u8; 4] = self
            .data
            .as_slice()
            .try_into()
            .map_err(|_| self.length_error())?;
        Ok(u32::from_be_bytes(b))
    }

    /// Unsigned64 value.
    ///
    /// # Errors
    /// 5014 unless the data is 8 bytes.
    pub fn as_u64(&self) -> Result<u64, MessageError> {
        let b: [u8; 8] = self
            .data
            .as_slice()
            .try_into()
            .map_err(|_| self.length_error())?;
        Ok(u64::from_be_bytes(b))
    }

    /// UTF8String / DiameterIdentity value.
    ///
    /// # Errors
    /// [`MessageError::InvalidAvpValue`] (5004) when not UTF-8.
    pub fn as_utf8(&self) -> Result<&str, MessageError> {
        std::str::from_utf8(&self.data).map_err(|_| MessageError::InvalidAvpValue {
            failed_avp: self.clone(),
            reason: "not UTF-8",
        })
    }

    /// Address value (IPv4 or IPv6 family only).
    ///
    /// # Errors
    /// 5014 when the length does not match the family, 5004 for other families.
    pub fn as_ip(&self) -> Result<IpAddr, MessageError> {
        let mut r = Reader::new(&self.data);
        let fam = r.take(2).ok_or_else(|| self.length_error())?;
        let rest = r.peek_rest();
        match fam {
            [0, 1] => <[u8; 4]>::try_from(rest)
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .map_err(|_| self.length_error()),
            [0, 2] => <[u8; 16]>::try_from(rest)
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .map_err(|_| self.length_error()),
            _ => Err(MessageError::InvalidAvpValue {
                failed_avp: self.clone(),
                reason: "address family is neither IPv4 nor IPv6",
            }),
        }
    }

    /// Decodes the data as a sequence of AVPs with the default limits.
    ///
    /// # Errors
    /// As [`Decoder::decode_avps`]; errors name this AVP as the parent in Failed-AVP.
    pub fn children(&self) -> Result<Vec<Avp>, MessageError> {
        Decoder::default()
            .decode_avps_at(&self.data, 2)
            .map_err(|e| e.within(self))
    }

    /// 5014 naming this AVP.
    pub(crate) fn length_error(&self) -> MessageError {
        MessageError::InvalidAvpLength {
            failed_avp: self.clone(),
        }
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

impl Decoder {
    /// Decodes a sequence of AVPs filling `buf` (a message body or a grouped AVP's data),
    /// walking grouped AVPs the dictionary knows.
    ///
    /// # Errors
    /// 5014 for a length below the header or overrunning `buf`, 3009 for reserved flag bits,
    /// 5004 when grouped AVPs nest deeper than the cap.
    pub fn decode_avps(&self, buf: &[u8]) -> Result<Vec<Avp>, MessageError> {
        self.decode_avps_at(buf, 1)
    }

    pub(crate) fn decode_avps_at(
        &self,
        buf: &[u8],
        depth: usize,
    ) -> Result<Vec<Avp>, MessageError> {
        self.decode_seq(Reader::new(buf), depth)
    }

    fn decode_seq(&self, mut r: Reader<'_>, depth: usize) -> Result<Vec<Avp>, MessageError> {
        // Each AVP takes at least 8 bytes, so this bounds the allocation by the checked length.
        let mut out = Vec::with_capacity(r.remaining() / 8);
        while !r.is_empty() {
            if let Some(avp) = self.decode_one(&mut r, depth, true)? {
                out.push(avp);
            }
        }
        Ok(out)
    }

    /// [`Self::decode_seq`] without keeping anything: the same checks and errors, no
    /// allocation (a grouped AVP's children are checked here and decoded again only when
    /// someone asks for them, [`Avp::children`]).
    fn check_seq(&self, mut r: Reader<'_>, depth: usize) -> Result<(), MessageError> {
        while !r.is_empty() {
            self.decode_one(&mut r, depth, false)?;
        }
        Ok(())
    }

    /// One AVP: `Some` when `keep`, `None` (checked only) otherwise.
    fn decode_one(
        &self,
        r: &mut Reader<'_>,
        depth: usize,
        keep: bool,
    ) -> Result<Option<Avp>, MessageError> {
        let start = r.peek_rest();
        let truncated_header = || {
            // RFC 6733 §7.5: pad the incomplete header with zeros to the minimum header length.
            let mut h = [0u8; 12];
            for (d, s) in h.iter_mut().zip(start.iter()) {
                *d = *s;
            }
            let mut hr = Reader::new(&h);
            let code = hr.u32().unwrap_or(0);
            let flags = AvpFlags(hr.u8().unwrap_or(0));
            let _ = hr.u24();
            let vendor = if flags.is_vendor() {
                hr.u32().unwrap_or(0)
            } else {
                0
            };
            MessageError::InvalidAvpLength {
                failed_avp: placeholder(code, flags, vendor),
            }
        };
        let (Some(code), Some(flags), Some(len)) = (r.u32(), r.u8(), r.u24()) else {
            return Err(truncated_header());
        };
        let flags = AvpFlags(flags);
        let len = len as usize;
        let (vendor_id, hlen) = if flags.is_vendor() {
            match r.u32() {
                Some(v) => (Some(v), 12),
                None => return Err(truncated_header()),
            }
        } else {
            (None, 8)
        };
        let vendor = vendor_id.unwrap_or(0);
        let bad_length = || MessageError::InvalidAvpLength {
            failed_avp: placeholder(code, flags, vendor),
        };
        let data_len = len.checked_sub(hlen).ok_or_else(bad_length)?;
        let data = r.sub(data_len).ok_or_else(bad_length)?;
        let pad = padding(len);
        if r.skip_up_to(pad) != pad && !r.is_empty() {
            return Err(bad_length());
        }
        let bytes = data.peek_rest();
        let avp = || Avp {
            code,
            flags,
            vendor_id,
            data: bytes.to_vec(),
        };
        if flags.0 & AvpFlags::RESERVED != 0 {
            return Err(MessageError::InvalidAvpBits { failed_avp: avp() });
        }
        // Failed-AVP carries the AVPs someone else found wrong, possibly malformed on purpose
        // (RFC 6733 §7.5 placeholders): it is kept opaque rather than walked.
        let walk = (code, vendor) != (dict::FAILED_AVP, 0)
            && dict::lookup(code, vendor).is_some_and(|d| d.ty == AvpType::Grouped);
        if walk {
            if depth >= self.max_depth {
                return Err(MessageError::InvalidAvpValue {
                    failed_avp: Avp {
                        code,
                        flags,
                        vendor_id,
                        data: Vec::new(),
                    },
                    reason: "grouped AVPs nested too deep",
                });
            }
            self.check_seq(Reader::new(bytes), depth + 1)
                .map_err(|e| e.within(&avp()))?;
        }
        Ok(keep.then(avp))
    }
}

/// Lookups over a list of AVPs (a message body or a grouped AVP's children).
pub trait AvpList {
    /// The first AVP with this code and vendor (0 = none).
    fn find(&self, code: u32, vendor: u32) -> Option<&Avp>;

    /// All AVPs with this code and vendor.
    fn find_all(&self, code: u32, vendor: u32) -> impl Iterator<Item = &Avp>;

    /// Unsigned32/Enumerated value, `Ok(None)` when absent.
    ///
    /// # Errors
    /// 5014 when present with a length other than 4.
    fn get_u32(&self, code: u32, vendor: u32) -> Result<Option<u32>, MessageError> {
        self.find(code, vendor).map(Avp::as_u32).transpose()
    }

    /// UTF8String value, `Ok(None)` when absent.
    ///
    /// # Errors
    /// 5004 when present and not UTF-8.
    fn get_utf8(&self, code: u32, vendor: u32) -> Result<Option<&str>, MessageError> {
        self.find(code, vendor).map(Avp::as_utf8).transpose()
    }

    /// Children of a grouped AVP, `Ok(None)` when absent.
    ///
    /// # Errors
    /// As [`Avp::children`].
    fn get_grouped(&self, code: u32, vendor: u32) -> Result<Option<Vec<Avp>>, MessageError> {
        self.find(code, vendor).map(Avp::children).transpose()
    }

    /// Like [`get_u32`](Self::get_u32) but absent is 5005 DIAMETER_MISSING_AVP.
    ///
    /// # Errors
    /// 5005 when absent, 5014 when malformed.
    fn require_u32(&self, code: u32, vendor: u32) -> Result<u32, MessageError> {
        self.get_u32(code, vendor)?
            .ok_or_else(|| missing(code, vendor))
    }

    /// Like [`get_utf8`](Self::get_utf8) but absent is 5005 DIAMETER_MISSING_AVP.
    ///
    /// # Errors
    /// 5005 when absent, 5004 when not UTF-8.
    fn require_utf8(&self, code: u32, vendor: u32) -> Result<&str, MessageError> {
        self.get_utf8(code, vendor)?
            .ok_or_else(|| missing(code, vendor))
    }
}

impl AvpList for [Avp] {
    fn find(&self, code: u32, vendor: u32) -> Option<&Avp> {
        self.iter().find(|a| a.code == code && a.vendor() == vendor)
    }

    fn find_all(&self, code: u32, vendor: u32) -> impl Iterator<Item = &Avp> {
        self.iter()
            .filter(move |a| a.code == code && a.vendor() == vendor)
    }
}

/// 5005 DIAMETER_MISSING_AVP for `code`/`vendor`, with the RFC 6733 §7.5 placeholder.
pub fn missing(code: u32, vendor: u32) -> MessageError {
    let m = dict::lookup(code, vendor).is_none_or(|d| d.mandatory);
    let mut flags = if m { AvpFlags::MANDATORY } else { 0 };
    if vendor != 0 {
        flags |= AvpFlags::VENDOR;
    }
    MessageError::MissingAvp {
        failed_avp: placeholder(code, AvpFlags(flags), vendor),
    }
}
