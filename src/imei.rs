//! IMEI identity (SPEC §1.3).
//!
//! An IMEI is TAC (8 digits) + SNR (6 digits) + a Luhn check digit; an IMEISV is TAC + SNR + SVN
//! (2 digits). The lock compares and stores only the 14 digits TAC+SNR: the SVN changes with
//! firmware updates and the check digit is derived, so neither may ever cause a mismatch.
//!
//! This module only parses and formats; it knows nothing of protocols or storage.
//!
//! # Format
//! Accepted wire forms (anything else is [`ImeiError`], which the engine treats as
//! "no IMEI presented"):
//!
//! | form | example |
//! |---|---|
//! | 16 ASCII digits (IMEISV, 3GPP TS 23.003 §6.2.2) | `3520990017614823` |
//! | 15 ASCII digits (IMEI with a valid Luhn check digit) | `352099001761481` |
//! | 14 ASCII digits (TAC+SNR) | `35209900176148` |
//! | `IMEI,SV` (14 or 15 digits, a comma, 1–2 SVN digits) | `352099001761481,23` |
//! | 8 octets TBCD (nibbles swapped, `F` filler) | `53 02 99 00 71 16 84 32` |
//! | 16 octets, one digit value 0x00–0x09 each (Magma gateways) | `04 00 09 04 ...` |

use std::fmt;
use std::str::FromStr;

/// The lock key: TAC + SNR, 14 decimal digits, kept as an integer (< 10^14).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Imei(u64);

/// Which wire form an IMEI arrived in (for logs only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImeiForm {
    /// 16 ASCII digits.
    AsciiImeisv,
    /// 15 ASCII digits with a Luhn check digit.
    AsciiImei,
    /// 14 ASCII digits.
    Ascii14,
    /// `IMEI,SV`.
    CommaSv,
    /// 8-octet TBCD.
    Tbcd,
    /// 16 octets of digit values 0x00–0x09.
    DigitOctets,
}

/// An IMEI as parsed from the wire: the lock key plus what the device said of its software.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedImei {
    /// TAC + SNR.
    pub imei: Imei,
    /// Software version number, when the form carried one.
    pub svn: Option<u8>,
    /// The wire form it came in.
    pub form: ImeiForm,
}

/// Why a presented value is not an IMEI.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImeiError {
    #[error("IMEI value has unsupported length {0}")]
    Length(usize),
    #[error("IMEI value has a non-digit at offset {0}")]
    NonDigit(usize),
    #[error("IMEI check digit {found} does not match Luhn digit {expected}")]
    CheckDigit { expected: u8, found: u8 },
    #[error("TBCD IMEI has a filler nibble before the last position")]
    TbcdFiller,
    #[error("IMEI,SV form has a malformed software version")]
    Svn,
}

impl Imei {
    /// Largest valid key + 1.
    const LIMIT: u64 = 100_000_000_000_000;

    /// Builds the key from exactly 14 digit values (0–9 each).
    fn from_digit_values(d: &[u8]) -> Result<Self, ImeiError> {
        if d.len() != 14 {
            return Err(ImeiError::Length(d.len()));
        }
        let mut v = 0u64;
        for (i, &x) in d.iter().enumerate() {
            if x > 9 {
                return Err(ImeiError::NonDigit(i));
            }
            v = v * 10 + u64::from(x);
        }
        Ok(Self(v))
    }

    /// From the integer form (as stored). `None` when out of range.
    pub fn from_u64(v: u64) -> Option<Self> {
        (v < Self::LIMIT).then_some(Self(v))
    }

    /// The integer form (as stored).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The 14 digits TAC+SNR as digit values.
    pub fn digits(self) -> [u8; 14] {
        let mut out = [0u8; 14];
        let mut v = self.0;
        for slot in out.iter_mut().rev() {
            *slot = (v % 10) as u8;
            v /= 10;
        }
        out
    }

    /// Type Allocation Code (first 8 digits).
    pub fn tac(self) -> u32 {
        (self.0 / 1_000_000) as u32
    }

    /// The Luhn check digit over the 14 digits (3GPP TS 23.003 Annex B).
    pub fn check_digit(self) -> u8 {
        luhn(&self.digits())
    }

    /// The 15-digit IMEI with its check digit.
    pub fn to_imei15(self) -> String {
        format!("{self}{}", self.check_digit())
    }

    /// Parses any wire form of SPEC §1.3 from raw octets (RADIUS VSA value, Diameter AVP data).
    ///
    /// # Errors
    /// [`ImeiError`] when the octets are none of the accepted forms.
    pub fn parse_wire(raw: &[u8]) -> Result<ParsedImei, ImeiError> {
        match raw.len() {
            8 => parse_tbcd(raw),
            16 if raw.iter().all(|&b| b <= 9) => {
                let (body, sv) = raw.split_at(14);
                Ok(ParsedImei {
                    imei: Self::from_digit_values(body)?,
                    svn: Some(sv.iter().fold(0u8, |a, &x| a * 10 + x)),
                    form: ImeiForm::DigitOctets,
                })
            }
            _ => parse_ascii(raw),
        }
    }

    /// Parses a textual form (16, 15 or 14 digits, or `IMEI,SV`).
    ///
    /// # Errors
    /// [`ImeiError`] when the text is none of the accepted textual forms.
    pub fn parse_text(s: &str) -> Result<ParsedImei, ImeiError> {
        parse_ascii(s.as_bytes())
    }
}

/// Luhn digit for a digit-value slice (doubling every second digit from the right of the payload).
fn luhn(d: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    ((10 - (sum % 10)) % 10) as u8
}

/// Converts ASCII digits to digit values, naming the first offending offset.
fn ascii_digits(raw: &[u8], offset: usize) -> Result<Vec<u8>, ImeiError> {
    raw.iter()
        .enumerate()
        .map(|(i, &b)| {
            if b.is_ascii_digit() {
                Ok(b - b'0')
            } else {
                Err(ImeiError::NonDigit(offset + i))
            }
        })
        .collect()
}

/// 14 digits, or 15 with a valid check digit.
fn imei_from_14_or_15(d: &[u8]) -> Result<Imei, ImeiError> {
    match d {
        [body @ .., check] if d.len() == 15 => {
            let expected = luhn(body);
            if expected != *check {
                return Err(ImeiError::CheckDigit {
                    expected,
                    found: *check,
                });
            }
            Imei::from_digit_values(body)
        }
        _ => Imei::from_digit_values(d),
    }
}

fn parse_ascii(raw: &[u8]) -> Result<ParsedImei, ImeiError> {
    if let Some(comma) = raw.iter().position(|&b| b == b',') {
        let (left, right) = raw.split_at(comma);
        let sv = right.get(1..).unwrap_or_default();
        if !(1..=2).contains(&sv.len()) || !matches!(left.len(), 14 | 15) {
            return Err(if matches!(left.len(), 14 | 15) {
                ImeiError::Svn
            } else {
                ImeiError::Length(left.len())
            });
        }
        let d = ascii_digits(left, 0)?;
        let svd = ascii_digits(sv, comma + 1).map_err(|_| ImeiError::Svn)?;
        let svn = svd.iter().fold(0u8, |a, &x| a * 10 + x);
        return Ok(ParsedImei {
            imei: imei_from_14_or_15(&d)?,
            svn: Some(svn),
            form: ImeiForm::CommaSv,
        });
    }
    let form = match raw.len() {
        16 => ImeiForm::AsciiImeisv,
        15 => ImeiForm::AsciiImei,
        14 => ImeiForm::Ascii14,
        n => return Err(ImeiError::Length(n)),
    };
    let d = ascii_digits(raw, 0)?;
    let (imei, svn) = match form {
        ImeiForm::AsciiImeisv => {
            let (body, sv) = d.split_at(14);
            (
                Imei::from_digit_values(body)?,
                Some(sv.iter().fold(0u8, |a, &x| a * 10 + x)),
            )
        }
        _ => (imei_from_14_or_15(&d)?, None),
    };
    Ok(ParsedImei { imei, svn, form })
}

/// TBCD (3GPP TS 29.002 TBCD-STRING): digit n in the low nibble, n+1 in the high nibble; an odd
/// count is padded with `F` in the last high nibble. 16 digits are an IMEISV, 15 an IMEI.
fn parse_tbcd(raw: &[u8]) -> Result<ParsedImei, ImeiError> {
    let mut d = Vec::with_capacity(16);
    let mut filler_at = None;
    for (i, &b) in raw.iter().enumerate() {
        for (j, nib) in [b & 0x0f, b >> 4].into_iter().enumerate() {
            let pos = i * 2 + j;
            if filler_at.is_some() {
                return Err(ImeiError::TbcdFiller);
            }
            match nib {
                0..=9 => d.push(nib),
                0xf => filler_at = Some(pos),
                _ => return Err(ImeiError::NonDigit(i)),
            }
        }
    }
    match filler_at {
        None => {
            let (body, sv) = d.split_at(14);
            Ok(ParsedImei {
                imei: Imei::from_digit_values(body)?,
                svn: Some(sv.iter().fold(0u8, |a, &x| a * 10 + x)),
                form: ImeiForm::Tbcd,
            })
        }
        Some(15) => Ok(ParsedImei {
            imei: imei_from_14_or_15(&d)?,
            svn: None,
            form: ImeiForm::Tbcd,
        }),
        Some(_) => Err(ImeiError::TbcdFiller),
    }
}

impl fmt::Display for Imei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:014}", self.0)
    }
}

impl fmt::Debug for Imei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Imei({self})")
    }
}

impl FromStr for Imei {
    type Err = ImeiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_text(s).map(|p| p.imei)
    }
}

/// Text (14 digits) in human-readable formats such as JSON; the integer in binary formats (the
/// store), which keeps stored records small.
impl serde::Serialize for Imei {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Imei {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let v = u64::deserialize(d)?;
            Self::from_u64(v).ok_or_else(|| serde::de::Error::custom("IMEI out of range"))
        }
    }
}

/// Encodes an IMEISV as 8-octet TBCD (used by tests and the load generator).
pub fn to_tbcd(imei: Imei, svn: u8) -> [u8; 8] {
    let mut d = [0u8; 16];
    d[..14].copy_from_slice(&imei.digits());
    d[14] = (svn / 10) % 10;
    d[15] = svn % 10;
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = d[2 * i] | (d[2 * i + 1] << 4);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "35209900176148";

    fn key() -> Imei {
        KEY.parse().unwrap()
    }

    #[test]
    fn check_digit_matches_known_imei() {
        // 3GPP TS 23.003 Annex B worked example: 35209900176148 -> check digit 1.
        assert_eq!(key().check_digit(), 1);
        assert_eq!(key().to_imei15(), "352099001761481");
        assert_eq!(key().tac(), 35209900);
    }

    #[test]
    fn every_textual_form_yields_the_same_key() {
        for (text, svn, form) in [
            ("3520990017614823", Some(23), ImeiForm::AsciiImeisv),
            ("352099001761481", None, ImeiForm::AsciiImei),
            ("35209900176148", None, ImeiForm::Ascii14),
            ("352099001761481,23", Some(23), ImeiForm::CommaSv),
            ("35209900176148,7", Some(7), ImeiForm::CommaSv),
        ] {
            let p = Imei::parse_text(text).unwrap();
            assert_eq!(p.imei, key(), "{text}");
            assert_eq!(p.svn, svn, "{text}");
            assert_eq!(p.form, form, "{text}");
        }
    }

    #[test]
    fn svn_never_changes_the_key() {
        let a = Imei::parse_text("3520990017614800").unwrap();
        let b = Imei::parse_text("3520990017614899").unwrap();
        assert_eq!(a.imei, b.imei);
        assert_ne!(a.svn, b.svn);
    }

    #[test]
    fn tbcd_imeisv_and_imei_with_filler() {
        // IMEISV 3520990017614823 -> nibble-swapped octets.
        let raw = [0x53, 0x02, 0x99, 0x00, 0x71, 0x16, 0x84, 0x32];
        let p = Imei::parse_wire(&raw).unwrap();
        assert_eq!((p.imei, p.svn, p.form), (key(), Some(23), ImeiForm::Tbcd));
        assert_eq!(to_tbcd(key(), 23), raw);
        // IMEI 352099001761481 + F filler.
        let raw = [0x53, 0x02, 0x99, 0x00, 0x71, 0x16, 0x84, 0xf1];
        let p = Imei::parse_wire(&raw).unwrap();
        assert_eq!((p.imei, p.svn), (key(), None));
    }

    #[test]
    fn magma_digit_octets() {
        // From vectors/magma-gx-gy-03: 04000904010705030307070600000000.
        let raw = [4, 0, 9, 4, 1, 7, 5, 3, 3, 7, 7, 6, 0, 0, 0, 0];
        let p = Imei::parse_wire(&raw).unwrap();
        assert_eq!(p.imei.to_string(), "40941753377600");
        assert_eq!(p.svn, Some(0));
        assert_eq!(p.form, ImeiForm::DigitOctets);
    }

    #[test]
    fn malformed_values_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"1234",
            b"3520990017614",       // 13 digits
            b"352099001761482",     // bad Luhn
            b"35209900176148234",   // 17 digits
            b"3520990017614a23",    // non-digit
            b" 352099001761481",    // leading space
            b"352099001761481,",    // empty SV
            b"352099001761481,123", // SV too long
            b"35209900176148,x1",
            b"1234567890123,12",                               // 13 + SV
            &[0x53, 0x02, 0x99, 0x00, 0x71, 0x16, 0xf4, 0x32], // filler inside
            &[0x53, 0x02, 0x99, 0x00, 0x71, 0x16, 0x84, 0xff], // two fillers
            &[0x53, 0x02, 0x99, 0x00, 0x71, 0x16, 0x84, 0xa2], // nibble 0xa
            &[0x53, 0x02, 0x99, 0x00, 0x71, 0x16, 0x84, 0xf2], // filler ok, bad Luhn
            &[4, 0, 9, 4, 1, 7, 5, 3, 3, 7, 7, 6, 0, 0, 0, 10],
        ];
        for c in cases {
            assert!(Imei::parse_wire(c).is_err(), "{c:02x?} accepted");
        }
    }

    #[test]
    fn serde_uses_14_digits() {
        let j = serde_json::to_string(&key()).unwrap();
        assert_eq!(j, format!("\"{KEY}\""));
        let back: Imei = serde_json::from_str(&j).unwrap();
        assert_eq!(back, key());
        assert!(serde_json::from_str::<Imei>("\"12\"").is_err());
    }

    proptest! {
        #[test]
        fn roundtrip_every_form(v in 0u64..Imei::LIMIT, svn in 0u8..100) {
            let imei = Imei::from_u64(v).unwrap();
            let s14 = imei.to_string();
            let forms = [
                s14.clone(),
                imei.to_imei15(),
                format!("{s14}{svn:02}"),
                format!("{},{svn:02}", imei.to_imei15()),
            ];
            for f in &forms {
                prop_assert_eq!(Imei::parse_wire(f.as_bytes()).unwrap().imei, imei);
            }
            let tb = Imei::parse_wire(&to_tbcd(imei, svn)).unwrap();
            prop_assert_eq!((tb.imei, tb.svn), (imei, Some(svn)));
            let mut octets = imei.digits().to_vec();
            octets.extend([svn / 10, svn % 10]);
            prop_assert_eq!(Imei::parse_wire(&octets).unwrap().imei, imei);
        }

        #[test]
        fn wrong_check_digit_is_rejected(v in 0u64..Imei::LIMIT, bump in 1u8..10) {
            let imei = Imei::from_u64(v).unwrap();
            let wrong = (imei.check_digit() + bump) % 10;
            let s = format!("{imei}{wrong}");
            let is_check_digit_error = matches!(
                Imei::parse_wire(s.as_bytes()),
                Err(ImeiError::CheckDigit { .. })
            );
            prop_assert!(is_check_digit_error);
        }

        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Imei::parse_wire(&raw);
        }
    }
}
