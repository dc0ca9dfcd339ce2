#!/usr/bin/env python3
"""Writes S13 ME-Identity-Check-Requests built by python-diameter 0.9.0 (a real third-party
Diameter stack) as seeds of the s13 fuzz target (imei_lockd::fuzzing::s13): one file each.

Usage: s13_seeds.py OUT_DIR
"""
import os
import sys

from diameter.message.avp import Avp
from diameter.message.commands import MeIdentityCheckRequest
from diameter.message.constants import (
    AVP_TGPP_3GPP2_MEID,
    AVP_TGPP_IMEI,
    AVP_TGPP_SOFTWARE_VERSION,
    AVP_TGPP_TERMINAL_INFORMATION,
    VENDOR_TGPP,
)


def ecr(user_name, imei=None, sv=None, meid=None, terminal=True):
    m = MeIdentityCheckRequest()
    m.header.application_id = 16777252
    m.header.hop_by_hop_identifier = 1
    m.header.end_to_end_identifier = 1
    m.session_id = "mme.localdomain;1;1"
    m.auth_session_state = 1
    m.origin_host = b"mme.localdomain"
    m.origin_realm = b"localdomain"
    m.destination_realm = b"localdomain"
    if user_name is not None:
        m.user_name = user_name
    if terminal:
        kids = []
        if imei is not None:
            kids.append(Avp.new(AVP_TGPP_IMEI, VENDOR_TGPP, value=imei))
        if meid is not None:
            kids.append(Avp.new(AVP_TGPP_3GPP2_MEID, VENDOR_TGPP, value=meid))
        if sv is not None:
            kids.append(Avp.new(AVP_TGPP_SOFTWARE_VERSION, VENDOR_TGPP, value=sv))
        m.append_avp(Avp.new(AVP_TGPP_TERMINAL_INFORMATION, VENDOR_TGPP, value=kids))
    return m.as_bytes()


SEEDS = {
    "imei15-sv": ecr("001010000000001", "352099001761481", "01"),
    "imei14": ecr("001010000000001", "35209900176148"),
    "imeisv16": ecr("001010000000001", "3520990017614823"),
    "comma-sv": ecr("001010000000001", "352099001761481,07"),
    "no-user-name": ecr(None, "352099001761481", "01"),
    "no-terminal": ecr("001010000000001", terminal=False),
    "no-imei": ecr("001010000000001", sv="01"),
    "meid": ecr("001010000000001", meid=b"\xa1\x00\x00\x00\x00\x00\x01"),
    "bad-length": ecr("001010000000001", "1234", "01"),
    "non-digit": ecr("001010000000001", "35209900176148X", "01"),
    "bad-user-name": ecr("user@realm", "352099001761481", "01"),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, b in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    main()
