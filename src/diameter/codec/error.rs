//! Result-Codes and the errors a received message can carry back to its sender.
//!
//! Each [`MessageError`] knows the Result-Code RFC 6733 assigns to it and, where §7.5 requires,
//! the content of the Failed-AVP AVP, so the caller can answer without re-deriving either (after
//! quinn's `TransportError`: code, frame, reason).
//!
//! This module does not build answers; see [`super::message::error_answer`].

use std::fmt;

use super::avp::Avp;
pub use super::avp::EncodeError;

/// A Diameter Result-Code (RFC 6733 §7.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultCode(pub u32);

impl ResultCode {
    /// 2001 DIAMETER_SUCCESS.
    pub const SUCCESS: Self = Self(2001);
    /// 3001 DIAMETER_COMMAND_UNSUPPORTED.
    pub const COMMAND_UNSUPPORTED: Self = Self(3001);
    /// 3002 DIAMETER_UNABLE_TO_DELIVER.
    pub const UNABLE_TO_DELIVER: Self = Self(3002);
    /// 3004 DIAMETER_TOO_BUSY.
    pub const TOO_BUSY: Self = Self(3004);
    /// 3007 DIAMETER_APPLICATION_UNSUPPORTED.
    pub const APPLICATION_UNSUPPORTED: Self = Self(3007);
    /// 3008 DIAMETER_INVALID_HDR_BITS.
    pub const INVALID_HDR_BITS: Self = Self(3008);
    /// 3009 DIAMETER_INVALID_AVP_BITS.
    pub const INVALID_AVP_BITS: Self = Self(3009);
    /// 3010 DIAMETER_UNKNOWN_PEER.
    pub const UNKNOWN_PEER: Self = Self(3010);
    /// 5001 DIAMETER_AVP_UNSUPPORTED.
    pub const AVP_UNSUPPORTED: Self = Self(5001);
    /// 5002 DIAMETER_UNKNOWN_SESSION_ID.
    pub const UNKNOWN_SESSION_ID: Self = Self(5002);
    /// 5003 DIAMETER_AUTHORIZATION_REJECTED.
    pub const AUTHORIZATION_REJECTED: Self = Self(5003);
    /// 5030 DIAMETER_USER_UNKNOWN (RFC 4006 §9.1): the S6b answer to a User-Name that names
    /// no IMSI (a pseudonym or fast re-authentication identity).
    pub const USER_UNKNOWN: Self = Self(5030);
    /// 5004 DIAMETER_INVALID_AVP_VALUE.
    pub const INVALID_AVP_VALUE: Self = Self(5004);
    /// 5005 DIAMETER_MISSING_AVP.
    pub const MISSING_AVP: Self = Self(5005);
    /// 5009 DIAMETER_AVP_OCCURS_TOO_MANY_TIMES.
    pub const AVP_OCCURS_TOO_MANY_TIMES: Self = Self(5009);
    /// 5010 DIAMETER_NO_COMMON_APPLICATION.
    pub const NO_COMMON_APPLICATION: Self = Self(5010);
    /// 5011 DIAMETER_UNSUPPORTED_VERSION.
    pub const UNSUPPORTED_VERSION: Self = Self(5011);
    /// 5012 DIAMETER_UNABLE_TO_COMPLY.
    pub const UNABLE_TO_COMPLY: Self = Self(5012);
    /// 5014 DIAMETER_INVALID_AVP_LENGTH.
    pub const INVALID_AVP_LENGTH: Self = Self(5014);
    /// 5015 DIAMETER_INVALID_MESSAGE_LENGTH.
    pub const INVALID_MESSAGE_LENGTH: Self = Self(5015);

    /// 1xxx informational or 2xxx success.
    pub fn is_success(self) -> bool {
        (1000..3000).contains(&self.0)
    }

    /// 3xxx: RFC 6733 §7.1.3 protocol errors, answered with the 'E' bit set in the
    /// answer-message format of §7.2.
    pub fn is_protocol_error(self) -> bool {
        (3000..4000).contains(&self.0)
    }

    /// The RFC 6733 name, for logs; `"UNKNOWN"` for codes this crate never sends.
    pub fn name(self) -> &'static str {
        match self.0 {
            2001 => "DIAMETER_SUCCESS",
            3001 => "DIAMETER_COMMAND_UNSUPPORTED",
            3002 => "DIAMETER_UNABLE_TO_DELIVER",
            3004 => "DIAMETER_TOO_BUSY",
            3007 => "DIAMETER_APPLICATION_UNSUPPORTED",
            3008 => "DIAMETER_INVALID_HDR_BITS",
            3009 => "DIAMETER_INVALID_AVP_BITS",
            3010 => "DIAMETER_UNKNOWN_PEER",
            5001 => "DIAMETER_AVP_UNSUPPORTED",
            5002 => "DIAMETER_UNKNOWN_SESSION_ID",
            5003 => "DIAMETER_AUTHORIZATION_REJECTED",
            5004 => "DIAMETER_INVALID_AVP_VALUE",
            5005 => "DIAMETER_MISSING_AVP",
            5009 => "DIAMETER_AVP_OCCURS_TOO_MANY_TIMES",
            5010 => "DIAMETER_NO_COMMON_APPLICATION",
            5011 => "DIAMETER_UNSUPPORTED_VERSION",
            5012 => "DIAMETER_UNABLE_TO_COMPLY",
            5014 => "DIAMETER_INVALID_AVP_LENGTH",
            5015 => "DIAMETER_INVALID_MESSAGE_LENGTH",
            5030 => "DIAMETER_USER_UNKNOWN",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.name())
    }
}

/// Why a message length field is unacceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthProblem {
    /// Shorter than the 20-byte header.
    ShorterThanHeader,
    /// Longer than the decoder's cap.
    OverCap {
        /// The configured maximum.
        cap: u32,
    },
    /// Not a multiple of 4 (RFC 6733 §3: "always a multiple of 4").
    Unaligned,
    /// The frame handed to `decode` is shorter than the header says.
    FrameShorter {
        /// Bytes actually supplied.
        have: usize,
    },
    /// The frame handed to `decode` is longer than the header says.
    FrameLonger {
        /// Bytes actually supplied.
        have: usize,
    },
}

/// An error in a received message, with the answer RFC 6733 prescribes for it.
///
/// Errors marked *stream-fatal* (see [`MessageError::is_stream_fatal`]) leave the byte stream
/// unframed: answer if possible, then close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Version other than 1 (→ 5011 DIAMETER_UNSUPPORTED_VERSION). Stream-fatal.
    #[error("unsupported Diameter version {version}")]
    UnsupportedVersion {
        /// The version octet received.
        version: u8,
    },
    /// Bad Message Length (→ 5015 DIAMETER_INVALID_MESSAGE_LENGTH). Stream-fatal.
    #[error("invalid message length {length}: {problem:?}")]
    InvalidMessageLength {
        /// The length field received.
        length: u32,
        /// What is wrong with it.
        problem: LengthProblem,
    },
    /// Reserved command-flag bits set, or 'E' on a request (→ 3008 DIAMETER_INVALID_HDR_BITS).
    #[error("invalid header flags {flags:#04x}")]
    InvalidHeaderBits {
        /// The command flags octet.
        flags: u8,
    },
    /// Reserved AVP flag bits set (→ 3009 DIAMETER_INVALID_AVP_BITS).
    #[error("AVP {} has reserved flag bits set", .failed_avp.code)]
    InvalidAvpBits {
        /// The offending AVP (for Failed-AVP).
        failed_avp: Avp,
    },
    /// AVP length below its header, overrunning its container, or not fitting its type
    /// (→ 5014 DIAMETER_INVALID_AVP_LENGTH).
    #[error("AVP {} has an invalid length", .failed_avp.code)]
    InvalidAvpLength {
        /// The offending AVP: header plus zero-filled minimum payload when its length was
        /// unusable (RFC 6733 §7.1.5), else the AVP itself.
        failed_avp: Avp,
    },
    /// A value that does not fit its type, or grouped AVPs nested beyond the decoder's depth
    /// cap (→ 5004 DIAMETER_INVALID_AVP_VALUE).
    #[error("AVP {} has an invalid value: {reason}", .failed_avp.code)]
    InvalidAvpValue {
        /// The offending AVP.
        failed_avp: Avp,
        /// What is wrong, for Error-Message and logs.
        reason: &'static str,
    },
    /// Unknown AVP with the 'M' bit set (→ 5001 DIAMETER_AVP_UNSUPPORTED).
    #[error("unsupported mandatory AVP {}/{}", .failed_avp.code, .failed_avp.vendor())]
    AvpUnsupported {
        /// The offending AVP.
        failed_avp: Avp,
    },
    /// A required AVP is absent (→ 5005 DIAMETER_MISSING_AVP).
    #[error("missing AVP {}/{}", .failed_avp.code, .failed_avp.vendor())]
    MissingAvp {
        /// An AVP with the missing code and vendor and a zero-filled minimum payload.
        failed_avp: Avp,
    },
}

impl MessageError {
    /// The Result-Code to answer with.
    pub fn result_code(&self) -> ResultCode {
        match self {
            Self::UnsupportedVersion { .. } => ResultCode::UNSUPPORTED_VERSION,
            Self::InvalidMessageLength { .. } => ResultCode::INVALID_MESSAGE_LENGTH,
            Self::InvalidHeaderBits { .. } => ResultCode::INVALID_HDR_BITS,
            Self::InvalidAvpBits { .. } => ResultCode::INVALID_AVP_BITS,
            Self::InvalidAvpLength { .. } => ResultCode::INVALID_AVP_LENGTH,
            Self::InvalidAvpValue { .. } => ResultCode::INVALID_AVP_VALUE,
            Self::AvpUnsupported { .. } => ResultCode::AVP_UNSUPPORTED,
            Self::MissingAvp { .. } => ResultCode::MISSING_AVP,
        }
    }

    /// The content of the Failed-AVP AVP (RFC 6733 §7.5), when the error names an AVP.
    pub fn failed_avp(&self) -> Option<&Avp> {
        match self {
            Self::InvalidAvpBits { failed_avp }
            | Self::InvalidAvpLength { failed_avp }
            | Self::InvalidAvpValue { failed_avp, .. }
            | Self::AvpUnsupported { failed_avp }
            | Self::MissingAvp { failed_avp } => Some(failed_avp),
            _ => None,
        }
    }

    /// True when the stream can no longer be framed (version or length errors): the connection
    /// must be closed after any answer.
    pub fn is_stream_fatal(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedVersion { .. } | Self::InvalidMessageLength { .. }
        )
    }

    /// Wraps an error found inside a grouped AVP so its Failed-AVP names the path: RFC 6733
    /// §7.5 lets Failed-AVP "contain the grouped AVP, which in turn contains the single
    /// offending AVP".
    pub(crate) fn within(self, parent: &Avp) -> Self {
        let wrap = |inner: Avp| parent.with_data(inner.to_bytes_lossy());
        match self {
            Self::InvalidAvpBits { failed_avp } => Self::InvalidAvpBits {
                failed_avp: wrap(failed_avp),
            },
            Self::InvalidAvpLength { failed_avp } => Self::InvalidAvpLength {
                failed_avp: wrap(failed_avp),
            },
            Self::InvalidAvpValue { failed_avp, reason } => Self::InvalidAvpValue {
                failed_avp: wrap(failed_avp),
                reason,
            },
            Self::AvpUnsupported { failed_avp } => Self::AvpUnsupported {
                failed_avp: wrap(failed_avp),
            },
            Self::MissingAvp { failed_avp } => Self::MissingAvp {
                failed_avp: wrap(failed_avp),
            },
            other => other,
        }
    }
}
