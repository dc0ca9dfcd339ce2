#!/usr/bin/env python3
"""Writes Diameter seed inputs for the `diameter` fuzz target, encoded by python-diameter 0.9.0.

Usage: diameter_seeds.py OUTDIR

One file per message (CER, CEA, CCR-I/U/T with Subscription-Id and User-Equipment-Info in ASCII
and TBCD, DWR, DWA, DPR, AAR with Terminal-Information, STR) and a few whole connections (the
messages concatenated as a peer sends them after its CER), named after what they hold.
The Origin-Host is imei_lockd::fuzzing::DIAMETER_PEER_HOST, so the target's peer machine opens.
"""

import os
import sys

from diameter.message.avp import Avp
from diameter.message.avp.grouped import (
    SubscriptionId,
    UserEquipmentInfo,
    VendorSpecificApplicationId,
)
from diameter.message.commands import (
    AaRequest,
    CapabilitiesExchangeAnswer,
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
    DisconnectPeerRequest,
    SessionTerminationRequest,
)
from diameter.message.constants import (
    AVP_SERVICE_SELECTION,
    AVP_TGPP_IMEI,
    AVP_TGPP_SOFTWARE_VERSION,
    AVP_TGPP_TERMINAL_INFORMATION,
    VENDOR_TGPP,
)

APP_GX = 16777238
APP_S6B = 16777272
HOST = b"pgw.localdomain"
REALM = b"localdomain"
IMSI = "001010000000001"
IMEISV = "3520990017614823"
NAI = IMSI + "@nai.epc.mnc001.mcc001.3gppnetwork.org"

hbh = 0x1000


def ids(m):
    global hbh
    hbh += 1
    m.header.hop_by_hop_identifier = hbh
    m.header.end_to_end_identifier = 0x2000 + hbh
    return m


def origin(m):
    m.origin_host = HOST
    m.origin_realm = REALM
    return m


def tbcd(digits):
    if len(digits) % 2:
        digits += "F"
    return bytes((int(digits[i + 1], 16) << 4) | int(digits[i], 16) for i in range(0, len(digits), 2))


def cer():
    m = origin(CapabilitiesExchangeRequest())
    m.host_ip_address = ["127.0.0.1"]
    m.vendor_id = 0
    m.product_name = "python-diameter"
    m.origin_state_id = 1
    m.supported_vendor_id = [VENDOR_TGPP]
    m.auth_application_id = []
    m.vendor_specific_application_id = [
        VendorSpecificApplicationId(vendor_id=VENDOR_TGPP, auth_application_id=a)
        for a in (APP_GX, APP_S6B)
    ]
    return ids(m)


def cea():
    m = origin(CapabilitiesExchangeAnswer())
    m.result_code = 2001
    m.host_ip_address = ["127.0.0.1"]
    m.vendor_id = 0
    m.product_name = "python-diameter"
    return ids(m)


def ccr(kind, number, imei=None, fmt="ascii", msisdn=None):
    m = origin(CreditControlRequest())
    m.header.application_id = APP_GX
    m.session_id = "pgw.localdomain;1700000000;1"
    m.destination_realm = REALM
    m.auth_application_id = APP_GX
    m.cc_request_type = kind
    m.cc_request_number = number
    m.subscription_id = [SubscriptionId(subscription_id_type=1, subscription_id_data=IMSI)]
    if msisdn:
        m.subscription_id.append(SubscriptionId(subscription_id_type=0, subscription_id_data=msisdn))
    if imei:
        value = tbcd(imei) if fmt == "tbcd" else imei.encode()
        m.user_equipment_info = UserEquipmentInfo(
            user_equipment_info_type=0, user_equipment_info_value=value)
    m.called_station_id = "iot.apn"
    m.rat_type = 1004
    return ids(m)


def aar(imei=None, sv=None):
    m = origin(AaRequest())
    m.header.application_id = APP_S6B
    m.session_id = "pgw.localdomain;1700000000;2"
    m.auth_application_id = APP_S6B
    m.destination_realm = REALM
    m.auth_request_type = 1
    m.user_name = NAI
    m.append_avp(Avp.new(AVP_SERVICE_SELECTION, value="iot.apn"))
    if imei:
        kids = [Avp.new(AVP_TGPP_IMEI, VENDOR_TGPP, value=imei)]
        if sv:
            kids.append(Avp.new(AVP_TGPP_SOFTWARE_VERSION, VENDOR_TGPP, value=sv))
        m.append_avp(Avp.new(AVP_TGPP_TERMINAL_INFORMATION, VENDOR_TGPP, value=kids))
    return ids(m)


def str_(user=True):
    m = origin(SessionTerminationRequest())
    m.header.application_id = APP_S6B
    m.session_id = "pgw.localdomain;1700000000;2"
    m.destination_realm = REALM
    m.auth_application_id = APP_S6B
    m.termination_cause = 1
    if user:
        m.user_name = NAI
    return ids(m)


def dwr():
    return ids(origin(DeviceWatchdogRequest()))


def dwa():
    m = origin(DeviceWatchdogAnswer())
    m.result_code = 2001
    return ids(m)


def dpr():
    m = origin(DisconnectPeerRequest())
    m.disconnect_cause = 0
    return ids(m)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    single = {
        "cer": cer(),
        "cea": cea(),
        "ccr-i-ascii-imeisv": ccr(1, 0, IMEISV, msisdn="46700000001"),
        "ccr-i-tbcd-imeisv": ccr(1, 0, IMEISV, "tbcd"),
        "ccr-i-tbcd-imei15": ccr(1, 0, "352099001761481", "tbcd"),
        "ccr-i-no-imei": ccr(1, 0),
        "ccr-u": ccr(2, 1, IMEISV),
        "ccr-t": ccr(3, 2),
        "aar-terminal-info": aar("35209900176148", "23"),
        "aar-no-imei": aar(),
        "str": str_(),
        "str-no-user": str_(False),
        "dwr": dwr(),
        "dwa": dwa(),
        "dpr": dpr(),
    }
    raw = {k: m.as_bytes() for k, m in single.items()}
    for name, b in raw.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(b)
    streams = {
        "conn-gx": ["cer", "ccr-i-ascii-imeisv", "ccr-u", "dwr", "ccr-t", "dpr"],
        "conn-gx-tbcd": ["cer", "ccr-i-tbcd-imeisv", "dwa", "ccr-t"],
        "conn-s6b": ["cer", "aar-terminal-info", "str", "dwr", "dpr"],
        "conn-before-cer": ["ccr-i-ascii-imeisv", "cer"],
        "conn-second-cer": ["cer", "cer", "aar-no-imei"],
    }
    for name, parts in streams.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"".join(raw[p] for p in parts))


if __name__ == "__main__":
    main()
