//! The Diameter message header (RFC 6733 §3) and stream framing.
//!
//! # Format
//! ```text
//!     0                   1                   2                   3
//!     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |    Version    |                 Message Length                |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    | Command Flags |                  Command Code                 |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                         Application-ID                        |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                      Hop-by-Hop Identifier                    |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!    |                      End-to-End Identifier                    |
//!    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! RFC 6733 §3: "Version: This Version field MUST be set to 1 to indicate Diameter Version 1."
//! "Message Length: The Message Length field is three octets and indicates the length of the
//! Diameter message including the header fields and the padded AVPs. Thus, the Message Length
//! field is always a multiple of 4." Command Flags are `R P E T r r r r`; "r(eserved) – These
//! flag bits are reserved for future use; they MUST be set to zero".
//!
//! This module reads no sockets: [`Decoder::peek_length`] only says how many bytes the next
//! message occupies, so a TCP or SCTP shell can frame the stream.

use super::error::{LengthProblem, MessageError};
use super::reader::Reader;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// Default cap on a message's length (64 KiB).
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 64 * 1024;
/// Default cap on the nesting depth of grouped AVPs the decoder walks.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// Command flags (RFC 6733 §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CommandFlags(pub u8);

impl CommandFlags {
    /// R(equest).
    pub const REQUEST: u8 = 0x80;
    /// P(roxiable).
    pub const PROXIABLE: u8 = 0x40;
    /// E(rror): the answer carries a protocol error (3xxx).
    pub const ERROR: u8 = 0x20;
    /// T: potentially retransmitted.
    pub const RETRANSMIT: u8 = 0x10;
    /// The four reserved bits.
    pub const RESERVED: u8 = 0x0f;

    pub fn is_request(self) -> bool {
        self.0 & Self::REQUEST != 0
    }
    pub fn is_proxiable(self) -> bool {
        self.0 & Self::PROXIABLE != 0
    }
    pub fn is_error(self) -> bool {
        self.0 & Self::ERROR != 0
    }
    pub fn is_retransmit(self) -> bool {
        self.0 & Self::RETRANSMIT != 0
    }

    /// Sets or clears `bit`.
    #[must_use]
    pub fn with(self, bit: u8, on: bool) -> Self {
        if on {
            Self(self.0 | bit)
        } else {
            Self(self.0 & !bit)
        }
    }
}

/// A message header. `length` is the wire value when decoded and is recomputed on encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message Length as received (ignored on encode).
    pub length: u32,
    pub flags: CommandFlags,
    /// 24-bit command code.
    pub code: u32,
    pub application_id: u32,
    pub hop_by_hop: u32,
    pub end_to_end: u32,
}

impl Header {
    /// Reads the 20 header bytes without judging them (for answering a message whose header is
    /// invalid: the identifiers are still needed). `None` when fewer than 20 bytes.
    pub fn parse_unchecked(buf: &[u8]) -> Option<(u8, Self)> {
        let mut r = Reader::new(buf);
        let version = r.u8()?;
        let length = r.u24()?;
        let flags = CommandFlags(r.u8()?);
        let code = r.u24()?;
        let application_id = r.u32()?;
        let hop_by_hop = r.u32()?;
        let end_to_end = r.u32()?;
        Some((
            version,
            Self {
                length,
                flags,
                code,
                application_id,
                hop_by_hop,
                end_to_end,
            },
        ))
    }

    /// Writes the header with the given total length.
    pub(crate) fn write(&self, length: u32, out: &mut Vec<u8>) {
        out.push(1);
        out.extend_from_slice(&length.to_be_bytes()[1..]);
        out.push(self.flags.0);
        out.extend_from_slice(&(self.code & 0x00ff_ffff).to_be_bytes()[1..]);
        out.extend_from_slice(&self.application_id.to_be_bytes());
        out.extend_from_slice(&self.hop_by_hop.to_be_bytes());
        out.extend_from_slice(&self.end_to_end.to_be_bytes());
    }
}

/// Decoding limits; [`Decoder::default`] uses a 64 KiB message cap and a grouped depth of 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    pub(crate) max_message_len: u32,
    pub(crate) max_depth: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_LEN)
    }
}

impl Decoder {
    /// A decoder accepting messages up to `max_message_len` bytes (at least the header).
    pub fn new(max_message_len: u32) -> Self {
        Self {
            max_message_len: max_message_len.max(HEADER_LEN as u32),
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Sets the nesting cap for grouped AVPs (1 = no grouped AVP may be walked; at most 32).
    #[must_use]
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.clamp(1, 32);
        self
    }

    /// The message length cap.
    pub fn max_message_len(&self) -> u32 {
        self.max_message_len
    }

    /// How many bytes the next message occupies: `Ok(None)` when fewer than 4 bytes are
    /// buffered, else `Ok(Some(len))`; read until `len` bytes are buffered, then
    /// [`decode`](Self::decode) exactly those.
    ///
    /// # Errors
    /// [`MessageError::UnsupportedVersion`] (5011) or [`MessageError::InvalidMessageLength`]
    /// (5015: below 20, above the cap, or not a multiple of 4). Both are stream-fatal: answer
    /// if the 20 header bytes are there, then close.
    pub fn peek_length(&self, buf: &[u8]) -> Result<Option<usize>, MessageError> {
        let mut r = Reader::new(buf);
        let (Some(version), Some(length)) = (r.u8(), r.u24()) else {
            return Ok(None);
        };
        if version != 1 {
            return Err(MessageError::UnsupportedVersion { version });
        }
        let problem = if (length as usize) < HEADER_LEN {
            Some(LengthProblem::ShorterThanHeader)
        } else if length > self.max_message_len {
            Some(LengthProblem::OverCap {
                cap: self.max_message_len,
            })
        } else if length % 4 != 0 {
            Some(LengthProblem::Unaligned)
        } else {
            None
        };
        match problem {
            Some(problem) => Err(MessageError::InvalidMessageLength { length, problem }),
            None => Ok(Some(length as usize)),
        }
    }

    /// Validates the header of one complete frame.
    ///
    /// # Errors
    /// As [`peek_length`](Self::peek_length), plus 5015 when `frame` is not exactly the
    /// header's length and 3008 for reserved flag bits or 'E' on a request.
    pub fn decode_header(&self, frame: &[u8]) -> Result<Header, MessageError> {
        let length = match self.peek_length(frame)? {
            Some(l) => l,
            None => {
                return Err(MessageError::InvalidMessageLength {
                    length: 0,
                    problem: LengthProblem::FrameShorter { have: frame.len() },
                })
            }
        };
        let problem = match frame.len() {
            n if n < length => Some(LengthProblem::FrameShorter { have: n }),
            n if n > length => Some(LengthProblem::FrameLonger { have: n }),
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(MessageError::InvalidMessageLength {
                length: length as u32,
                problem,
            });
        }
        let (_, header) =
            Header::parse_unchecked(frame).ok_or(MessageError::InvalidMessageLength {
                length: length as u32,
                problem: LengthProblem::ShorterThanHeader,
            })?;
        let f = header.flags;
        if f.0 & CommandFlags::RESERVED != 0 || (f.is_request() && f.is_error()) {
            return Err(MessageError::InvalidHeaderBits { flags: f.0 });
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diameter::codec::ResultCode;

    fn hdr(version: u8, len: u32, flags: u8) -> Vec<u8> {
        let mut v = vec![version];
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(flags);
        v.extend_from_slice(&[0, 1, 0x18, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2]);
        v
    }

    #[test]
    fn peek_length_cases() {
        let d = Decoder::default();
        assert_eq!(d.peek_length(&[1, 0, 0]), Ok(None));
        assert_eq!(d.peek_length(&hdr(1, 20, 0x80)), Ok(Some(20)));
        let table: [(u8, u32, ResultCode); 5] = [
            (2, 20, ResultCode::UNSUPPORTED_VERSION),
            (0, 20, ResultCode::UNSUPPORTED_VERSION),
            (1, 16, ResultCode::INVALID_MESSAGE_LENGTH),
            (1, 22, ResultCode::INVALID_MESSAGE_LENGTH),
            (1, 65540, ResultCode::INVALID_MESSAGE_LENGTH),
        ];
        for (v, len, rc) in table {
            let e = d.peek_length(&hdr(v, len, 0x80)).unwrap_err();
            assert_eq!(e.result_code(), rc, "{v} {len}");
            assert!(e.is_stream_fatal());
        }
        assert_eq!(
            Decoder::new(100)
                .peek_length(&hdr(1, 104, 0))
                .unwrap_err()
                .result_code(),
            ResultCode::INVALID_MESSAGE_LENGTH
        );
    }

    #[test]
    fn header_bits() {
        let d = Decoder::default();
        for flags in [0x81, 0x88, 0xa0, 0x0f] {
            let e = d.decode_header(&hdr(1, 20, flags)).unwrap_err();
            assert_eq!(e.result_code(), ResultCode::INVALID_HDR_BITS, "{flags:#x}");
            assert!(!e.is_stream_fatal());
        }
        let h = d.decode_header(&hdr(1, 20, 0xd0)).unwrap();
        assert!(h.flags.is_request() && h.flags.is_proxiable() && h.flags.is_retransmit());
        assert_eq!(
            (h.code, h.application_id, h.hop_by_hop, h.end_to_end),
            (280, 0, 1, 2)
        );
        let mut long = hdr(1, 20, 0x80);
        long.push(0);
        assert!(d.decode_header(&long).is_err());
        assert!(d.decode_header(&long[..19]).is_err());
    }
}
