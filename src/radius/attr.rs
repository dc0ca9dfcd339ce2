//! Attribute type numbers this daemon reads or writes (the rest pass through untouched).

/// RFC 2865 §5.1 User-Name (string, Length ≥ 3).
pub const USER_NAME: u8 = 1;
/// RFC 2865 §5.2 User-Password (only written, by the request encoder for tests/load generation).
pub const USER_PASSWORD: u8 = 2;
/// RFC 2865 §5.18 Reply-Message (text, Length ≥ 3). "Multiple Reply-Message's MAY be included and
/// if any are displayed, they MUST be displayed in the same order as they appear in the packet."
pub const REPLY_MESSAGE: u8 = 18;
/// RFC 2865 §5.26 Vendor-Specific (Length ≥ 7).
pub const VENDOR_SPECIFIC: u8 = 26;
/// RFC 2865 §5.30 Called-Station-Id: on a GGSN/P-GW, the APN.
pub const CALLED_STATION_ID: u8 = 30;
/// RFC 2865 §5.31 Calling-Station-Id: on a GGSN/P-GW, the MSISDN.
pub const CALLING_STATION_ID: u8 = 31;
/// RFC 2865 §5.33 Proxy-State: "MUST be returned unmodified in the Access-Accept, Access-Reject
/// or Access-Challenge" (and, RFC 2866 §5, in the Accounting-Response).
pub const PROXY_STATE: u8 = 33;
/// RFC 2866 §5.1 Acct-Status-Type (integer, Length = 6).
pub const ACCT_STATUS_TYPE: u8 = 40;
/// RFC 2866 §5.5 Acct-Session-Id (text, Length ≥ 3).
pub const ACCT_SESSION_ID: u8 = 44;
/// RFC 2869 §5.14 / RFC 3579 §3.2 Message-Authenticator (Length = 18).
pub const MESSAGE_AUTHENTICATOR: u8 = 80;

/// RFC 2866 §5.1 Acct-Status-Type values.
pub mod acct_status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

#[cfg(test)]
mod tests {
    use radius::core::{rfc2865, rfc2866, rfc2869};

    /// Our numbers agree with the `radius` crate's dictionary.
    #[test]
    fn numbers_match_radius_crate() {
        assert_eq!(super::USER_NAME, rfc2865::USER_NAME_TYPE);
        assert_eq!(super::USER_PASSWORD, rfc2865::USER_PASSWORD_TYPE);
        assert_eq!(super::REPLY_MESSAGE, rfc2865::REPLY_MESSAGE_TYPE);
        assert_eq!(super::VENDOR_SPECIFIC, rfc2865::VENDOR_SPECIFIC_TYPE);
        assert_eq!(super::CALLED_STATION_ID, rfc2865::CALLED_STATION_ID_TYPE);
        assert_eq!(super::CALLING_STATION_ID, rfc2865::CALLING_STATION_ID_TYPE);
        assert_eq!(super::PROXY_STATE, rfc2865::PROXY_STATE_TYPE);
        assert_eq!(super::ACCT_STATUS_TYPE, rfc2866::ACCT_STATUS_TYPE_TYPE);
        assert_eq!(super::ACCT_SESSION_ID, rfc2866::ACCT_SESSION_ID_TYPE);
        assert_eq!(
            super::MESSAGE_AUTHENTICATOR,
            rfc2869::MESSAGE_AUTHENTICATOR_TYPE
        );
        assert_eq!(super::acct_status::START, rfc2866::ACCT_STATUS_TYPE_START);
        assert_eq!(super::acct_status::STOP, rfc2866::ACCT_STATUS_TYPE_STOP);
        assert_eq!(
            super::acct_status::INTERIM_UPDATE,
            rfc2866::ACCT_STATUS_TYPE_INTERIM_UPDATE
        );
        assert_eq!(
            super::acct_status::ACCOUNTING_ON,
            rfc2866::ACCT_STATUS_TYPE_ACCOUNTING_ON
        );
        assert_eq!(
            super::acct_status::ACCOUNTING_OFF,
            rfc2866::ACCT_STATUS_TYPE_ACCOUNTING_OFF
        );
    }
}
