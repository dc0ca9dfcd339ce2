//! Typed reads of AVP values ([`Avp::as_u32`], [`Avp::as_utf8`], ...) and of AVP lists
//! ([`AvpList`]): each read checks the data against its type and names the AVP in the error.
//!
//! This module does not decode bytes into AVPs (see [`super::avp_decode`]) nor judge a
//! message against a command's grammar (see [`mod@super::validate`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::avp::{placeholder, Avp, AvpFlags};
use super::dict;
use super::error::MessageError;
use super::header::Decoder;
use super::reader::Reader;

impl Avp {
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
