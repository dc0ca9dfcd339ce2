//! Whole messages: decode one framed message, encode, and build answers.
//!
//! RFC 6733 §3: a message is the 20-byte header followed by AVPs. §6.2: "The same Hop-by-Hop
//! identifier in the request is used in the answer", "The 'P' bit MUST be set to the same value
//! as the one in the request", and an answer carries the request's End-to-End Identifier.
//! §7.2 gives the generic error answer:
//! ```text
//! <answer-message> ::= < Diameter Header: code, ERR [, PXY] >
//!                 0*1< Session-Id >
//!                    { Origin-Host }
//!                    { Origin-Realm }
//!                    { Result-Code }
//!                    [ Origin-State-Id ]
//!                    [ Error-Message ]
//!                    [ Error-Reporting-Host ]
//!                    [ Failed-AVP ]
//!                    [ Experimental-Result ]
//!                  * [ Proxy-Info ]
//!                  * [ AVP ]
//! ```
//! This module does not validate AVP values or decide which answer to send.

use super::avp::Avp;
use super::avp_read::AvpList;
use super::dict;
use super::error::{EncodeError, MessageError, ResultCode};
use super::header::{CommandFlags, Decoder, Header, HEADER_LEN};

/// Largest value of the 24-bit Message Length field.
const MAX_MESSAGE_LEN: usize = 0x00ff_ffff;

/// A decoded (or to-be-encoded) message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub avps: Vec<Avp>,
}

/// Our identity as it appears in answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub host: String,
    pub realm: String,
    /// Origin-State-Id, when we keep one (RFC 6733 §8.16).
    pub state_id: Option<u32>,
}

impl Origin {
    /// Origin-Host and Origin-Realm AVPs.
    pub fn avps(&self) -> [Avp; 2] {
        [
            Avp::utf8(dict::ORIGIN_HOST, 0, &self.host),
            Avp::utf8(dict::ORIGIN_REALM, 0, &self.realm),
        ]
    }
}

impl Decoder {
    /// Decodes exactly one framed message (as delimited by [`Decoder::peek_length`]).
    ///
    /// # Errors
    /// Header errors as [`Decoder::decode_header`]; AVP errors as [`Decoder::decode_avps`].
    pub fn decode(&self, frame: &[u8]) -> Result<Message, MessageError> {
        let header = self.decode_header(frame)?;
        let body = frame.get(HEADER_LEN..).unwrap_or_default();
        let avps = self.decode_avps(body)?;
        Ok(Message { header, avps })
    }
}

impl Message {
    /// A new request (R set, P set: every command we send is proxiable except the base
    /// peer-to-peer ones, for which pass `proxiable = false`).
    pub fn request(code: u32, application_id: u32, proxiable: bool) -> Self {
        let flags = CommandFlags(CommandFlags::REQUEST).with(CommandFlags::PROXIABLE, proxiable);
        Self {
            header: Header {
                length: 0,
                flags,
                code,
                application_id,
                hop_by_hop: 0,
                end_to_end: 0,
            },
            avps: Vec::new(),
        }
    }

    /// An empty answer to `request`: same command, application, Hop-by-Hop and End-to-End
    /// identifiers; R, E and T cleared; P copied.
    pub fn answer_to(request: &Header) -> Self {
        let flags = CommandFlags(request.flags.0 & CommandFlags::PROXIABLE);
        Self {
            header: Header {
                length: 0,
                flags,
                ..*request
            },
            avps: Vec::new(),
        }
    }

    /// Appends an AVP.
    pub fn push(&mut self, avp: Avp) -> &mut Self {
        self.avps.push(avp);
        self
    }

    /// Builder form of [`push`](Self::push).
    #[must_use]
    pub fn with(mut self, avp: Avp) -> Self {
        self.avps.push(avp);
        self
    }

    /// Appends what every answer ends with (RFC 6733 §7.1-7.5): Origin-State-Id when we have one,
    /// Error-Message when there is a text, Failed-AVP when an AVP is at fault.
    pub fn push_answer_tail(
        &mut self,
        origin: &Origin,
        error_message: Option<&str>,
        failed_avp: Option<&Avp>,
    ) -> &mut Self {
        if let Some(s) = origin.state_id {
            self.push(Avp::u32(dict::ORIGIN_STATE_ID, 0, s));
        }
        if let Some(t) = error_message {
            self.push(Avp::utf8(dict::ERROR_MESSAGE, 0, t));
        }
        if let Some(f) = failed_avp {
            self.push(Avp::new(dict::FAILED_AVP, 0, f.to_bytes_lossy()));
        }
        self
    }

    pub fn is_request(&self) -> bool {
        self.header.flags.is_request()
    }

    /// The first AVP with this code and vendor.
    pub fn find(&self, code: u32, vendor: u32) -> Option<&Avp> {
        self.avps.find(code, vendor)
    }

    /// Session-Id, when present and UTF-8.
    pub fn session_id(&self) -> Option<&str> {
        self.avps.get_utf8(dict::SESSION_ID, 0).ok().flatten()
    }

    /// Origin-Host, when present and UTF-8.
    pub fn origin_host(&self) -> Option<&str> {
        self.avps.get_utf8(dict::ORIGIN_HOST, 0).ok().flatten()
    }

    /// Result-Code, when present and well-formed.
    pub fn result_code(&self) -> Option<ResultCode> {
        self.avps
            .get_u32(dict::RESULT_CODE, 0)
            .ok()
            .flatten()
            .map(ResultCode)
    }

    /// Experimental-Result as (Vendor-Id, Experimental-Result-Code), when present and
    /// well-formed.
    pub fn experimental_result(&self) -> Option<(u32, u32)> {
        let kids = self
            .avps
            .get_grouped(dict::EXPERIMENTAL_RESULT, 0)
            .ok()
            .flatten()?;
        let vendor = kids.get_u32(dict::VENDOR_ID, 0).ok().flatten()?;
        let code = kids
            .get_u32(dict::EXPERIMENTAL_RESULT_CODE, 0)
            .ok()
            .flatten()?;
        Some((vendor, code))
    }

    /// Encodes with a freshly computed length and zero padding.
    ///
    /// # Errors
    /// [`EncodeError`] when an AVP or the message exceeds its 24-bit length field.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut body = Vec::with_capacity(256);
        for a in &self.avps {
            a.encode_into(&mut body)?;
        }
        let len = body.len().saturating_add(HEADER_LEN);
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::MessageTooLong { len });
        }
        let mut out = Vec::with_capacity(len);
        self.header.write(len as u32, &mut out);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// The RFC 6733 §7.2 answer to a request that failed with `code`: Session-Id (when known),
/// Origin-Host, Origin-Realm, Result-Code, Origin-State-Id (when we have one), Error-Message
/// (when given), Failed-AVP (when given). The 'E' bit is set for 3xxx protocol errors.
///
/// 5xxx answers to application requests normally use the application's answer format; the
/// Gx and S6b modules add their own AVPs on top of this.
pub fn error_answer(
    request: &Header,
    session_id: Option<&str>,
    origin: &Origin,
    code: ResultCode,
    error_message: Option<&str>,
    failed_avp: Option<&Avp>,
) -> Message {
    let mut m = Message::answer_to(request);
    if code.is_protocol_error() {
        m.header.flags = m.header.flags.with(CommandFlags::ERROR, true);
    }
    if let Some(s) = session_id {
        m.push(Avp::utf8(dict::SESSION_ID, 0, s));
    }
    m.avps.extend(origin.avps());
    m.push(Avp::u32(dict::RESULT_CODE, 0, code.0));
    m.push_answer_tail(origin, error_message, failed_avp);
    m
}

/// [`error_answer`] for a [`MessageError`], taking its Result-Code and Failed-AVP and using
/// its text as Error-Message.
pub fn answer_for_error(
    request: &Header,
    session_id: Option<&str>,
    origin: &Origin,
    err: &MessageError,
) -> Message {
    let text = err.to_string();
    error_answer(
        request,
        session_id,
        origin,
        err.result_code(),
        Some(&text),
        err.failed_avp(),
    )
}
