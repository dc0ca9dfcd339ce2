//! Decoding a sequence of AVPs through a checked cursor (RFC 6733 §4.1, §4.4), walking the
//! grouped AVPs the dictionary knows only to check their structure (depth-capped).
//!
//! This module does not read typed values (see [`super::avp_read`]) and does not judge values
//! against types (see [`mod@super::validate`]).

use super::avp::{padding, placeholder, Avp, AvpFlags};
use super::dict::{self, AvpType};
use super::error::MessageError;
use super::header::Decoder;
use super::reader::Reader;

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
