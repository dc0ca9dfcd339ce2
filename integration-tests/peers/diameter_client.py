#!/usr/bin/env python3
"""A scripted Diameter client (PCEF / ePDG side) built on python-diameter's message classes.

Reads one JSON document from argv[1] or stdin:
    {"host": "127.0.0.1", "port": 3868, "origin_host": "pgw.localdomain",
     "origin_realm": "localdomain", "transport": "tcp"|"sctp", "steps": [{"op": "cer"}, {"op": "ccr", ...}, ...]}
runs the steps in order on one TCP connection and prints one JSON document on stdout:
    {"results": [{...}, ...]}
With the argument --stream, the document (without "steps") is the first line of stdin, the steps
follow one JSON object per line, and each result is printed (and flushed) as one line as soon as it is known:
the fault runs time every operation this way. A step's "timeout" (seconds) bounds its wait.
A DWR from the server is answered (DWA 2001) whenever we are waiting and counted in
"dwr_received" of the result of the step that saw it.

Steps:
  cer      {"apps": [16777238, 16777272]}           -> result_code, origin_host, apps, host_ip
  ccr      {"type": 1|2|3, "imsi", "imei"?, "imei_format": "ascii"|"tbcd", "session"?,
            "number"?}                               -> result_code, error_message
  aar      {"imsi", "imei"?, "sv"?, "uei_imei"?, "user_name"?}
                                                     -> result_code, error_message,
                                                        experimental_result_code/_vendor_id
  str      {"imsi"?, "user_name"?, "session"}        -> result_code
  ecr      {"imsi"?, "imei"?, "sv"?, "meid"? (hex), "terminal": true|false (default true)}
           S13 ME-Identity-Check-Request; User-Name only when "imsi" is given
                                                     -> result_code, equipment_status,
                                                        experimental_result_code/_vendor_id,
                                                        failed_avp, auth_session_state
  dwr      {}                                        -> result_code
  dpr      {}                                        -> result_code, closed
  wait_dwr {"timeout": s}                            -> got_dwr
  wait_dpr {"timeout": s}                            -> got_dpr, cause, closed (after our DPA)
  pipeline {"count", "imsi_base", "imei"}            -> count, answered, codes, all_matched
  expect_close {"timeout": s}                        -> closed
"""

import json
import random
import select
import socket
import sys
import time

from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.commands import (
    AaRequest,
    MeIdentityCheckRequest,
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogAnswer,
    DeviceWatchdogRequest,
    DisconnectPeerAnswer,
    DisconnectPeerRequest,
    SessionTerminationRequest,
)
from diameter.message.avp.grouped import (
    SubscriptionId,
    UserEquipmentInfo,
    VendorSpecificApplicationId,
)
from diameter.message.constants import (
    AVP_SERVICE_SELECTION,
    AVP_TGPP_3GPP2_MEID,
    AVP_TGPP_EQUIPMENT_STATUS,
    AVP_TGPP_IMEI,
    AVP_TGPP_SOFTWARE_VERSION,
    AVP_TGPP_TERMINAL_INFORMATION,
    VENDOR_TGPP,
)

APP_GX = 16777238
APP_S6B = 16777272
APP_S13 = 16777252


def tbcd(digits):
    """TBCD: two digits per octet, low nibble first, 'F' filler."""
    if len(digits) % 2:
        digits += "F"
    out = bytearray()
    for i in range(0, len(digits), 2):
        lo, hi = digits[i], digits[i + 1]
        out.append((int(hi, 16) << 4) | int(lo, 16))
    return bytes(out)


class Client:
    def __init__(self, cfg):
        self.cfg = cfg
        if cfg.get("transport") == "sctp":
            # Kernel one-to-one SCTP socket: a stream socket for connect/send/recv.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)
            self.sock.settimeout(10)
            self.sock.connect((cfg["host"], cfg["port"]))
        else:
            self.sock = socket.create_connection((cfg["host"], cfg["port"]), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.hbh = random.getrandbits(32)
        self.e2e = random.getrandbits(32)
        self.closed = False
        self.dwr_seen = 0
        self.pending_dpr = None
        self.origin_host = cfg["origin_host"].encode()
        self.origin_realm = cfg["origin_realm"].encode()

    # --- framing -------------------------------------------------------------------------
    def send(self, msg, app_id=None):
        h = msg.header
        if app_id is not None:
            h.application_id = app_id
        if h.is_request:
            self.hbh = (self.hbh + 1) & 0xFFFFFFFF
            self.e2e = (self.e2e + 1) & 0xFFFFFFFF
            h.hop_by_hop_identifier = self.hbh
            h.end_to_end_identifier = self.e2e
        self.sock.sendall(msg.as_bytes())
        return h.hop_by_hop_identifier

    def read_message(self, deadline):
        """The next message, or None at EOF or deadline."""
        while True:
            if len(self.buf) >= 4:
                length = int.from_bytes(self.buf[1:4], "big")
                if len(self.buf) >= length >= 20:
                    raw, self.buf = self.buf[:length], self.buf[length:]
                    return Message.from_bytes(raw)
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if not data:
                self.closed = True
                return None
            self.buf += data

    def answer_server_request(self, msg):
        """Answers a DWR; remembers a DPR. True if the message was a server request."""
        if not msg.header.is_request:
            return False
        if msg.header.command_code == 280:
            self.dwr_seen += 1
            a = DeviceWatchdogAnswer()
            a.header.hop_by_hop_identifier = msg.header.hop_by_hop_identifier
            a.header.end_to_end_identifier = msg.header.end_to_end_identifier
            a.result_code = 2001
            a.origin_host = self.origin_host
            a.origin_realm = self.origin_realm
            self.sock.sendall(a.as_bytes())
            return True
        if msg.header.command_code == 282:
            self.pending_dpr = msg
            return True
        return True

    def wait_answer(self, hbh, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            m = self.read_message(deadline)
            if m is None:
                return None
            if self.answer_server_request(m):
                continue
            if m.header.hop_by_hop_identifier == hbh:
                return m

    # --- helpers -------------------------------------------------------------------------
    def origin(self, m):
        m.origin_host = self.origin_host
        m.origin_realm = self.origin_realm

    def session(self, step):
        return step.get("session") or "%s;%d;%d" % (
            self.cfg["origin_host"], int(time.time()), random.getrandbits(31))

    @staticmethod
    def summary(a):
        if a is None:
            return {"result_code": None}
        out = {"result_code": None, "error": bool(a.header.is_error)}
        for avp in a.avps:
            if avp.code == 268:
                out["result_code"] = avp.value
            elif avp.code == 281:
                out["error_message"] = avp.value
            elif avp.code == 279:
                out["failed_avp"] = avp.payload.hex() if isinstance(avp.payload, bytes) else str(avp.value)
            elif avp.code == 263:
                out["session_id"] = avp.value
            elif avp.code == 258:
                out.setdefault("auth_application_id", avp.value)
            elif avp.code == AVP_TGPP_EQUIPMENT_STATUS and avp.vendor_id == VENDOR_TGPP:
                out["equipment_status"] = avp.value
            elif avp.code == 277:
                out["auth_session_state"] = avp.value
            elif avp.code == 297:
                for k in avp.value:
                    if k.code == 266:
                        out["experimental_vendor_id"] = k.value
                    elif k.code == 298:
                        out["experimental_result_code"] = k.value
        out["command"] = a.header.command_code
        out["application_id"] = a.header.application_id
        out["hop_by_hop"] = a.header.hop_by_hop_identifier
        return out

    # --- steps ---------------------------------------------------------------------------
    def cer(self, step):
        m = CapabilitiesExchangeRequest()
        self.origin(m)
        m.host_ip_address = ["127.0.0.1"]
        m.vendor_id = 0
        m.product_name = "python-diameter-it"
        m.origin_state_id = 1
        m.supported_vendor_id = [VENDOR_TGPP]
        apps = step.get("apps", [APP_GX, APP_S6B])
        m.auth_application_id = []
        m.vendor_specific_application_id = [
            VendorSpecificApplicationId(vendor_id=VENDOR_TGPP, auth_application_id=a) for a in apps
        ]
        hbh = self.send(m)
        a = self.wait_answer(hbh, step.get("timeout", 10))
        out = self.summary(a)
        if a is not None:
            out["peer_origin_host"] = next(
                (x.value.decode() for x in a.avps if x.code == 264), None)
            out["host_ip"] = [x.value[1] for x in a.avps if x.code == 257]
            vsai = []
            for x in a.avps:
                if x.code == 260:
                    for k in x.value:
                        if k.code == 258:
                            vsai.append(k.value)
            out["apps"] = vsai
        out["closed_after"] = self.closed_soon(step.get("close_wait", 0))
        return out

    def closed_soon(self, wait):
        if wait <= 0:
            return None
        deadline = time.monotonic() + wait
        while not self.closed:
            m = self.read_message(deadline)
            if m is None:
                break
        return self.closed

    def ccr_message(self, step):
        m = CreditControlRequest()
        m.header.application_id = APP_GX
        m.session_id = self.session(step)
        self.origin(m)
        m.destination_realm = b"localdomain"
        m.auth_application_id = APP_GX
        m.cc_request_type = step.get("type", 1)
        m.cc_request_number = step.get("number", 0)
        m.subscription_id = [SubscriptionId(subscription_id_type=1,
                                            subscription_id_data=step["imsi"])]
        if step.get("msisdn"):
            m.subscription_id.append(SubscriptionId(subscription_id_type=0,
                                                    subscription_id_data=step["msisdn"]))
        imei = step.get("imei")
        if imei:
            value = tbcd(imei) if step.get("imei_format") == "tbcd" else imei.encode()
            m.user_equipment_info = UserEquipmentInfo(user_equipment_info_type=0,
                                                      user_equipment_info_value=value)
        m.called_station_id = "iot.apn"
        m.rat_type = 1004
        return m

    def ccr(self, step):
        m = self.ccr_message(step)
        hbh = self.send(m, APP_GX)
        return self.summary(self.wait_answer(hbh, step.get("timeout", 10)))

    def aar(self, step):
        m = AaRequest()
        m.header.application_id = APP_S6B
        m.session_id = self.session(step)
        m.auth_application_id = APP_S6B
        self.origin(m)
        m.destination_realm = b"localdomain"
        m.auth_request_type = 1
        m.user_name = step.get("user_name") or (
            step["imsi"] + "@nai.epc.mnc001.mcc001.3gppnetwork.org")
        m.append_avp(Avp.new(AVP_SERVICE_SELECTION, value="iot.apn"))
        if step.get("imei"):
            kids = [Avp.new(AVP_TGPP_IMEI, VENDOR_TGPP, value=step["imei"])]
            if step.get("sv"):
                kids.append(Avp.new(AVP_TGPP_SOFTWARE_VERSION, VENDOR_TGPP, value=step["sv"]))
            m.append_avp(Avp.new(AVP_TGPP_TERMINAL_INFORMATION, VENDOR_TGPP, value=kids))
        hbh = self.send(m, APP_S6B)
        return self.summary(self.wait_answer(hbh))

    def str_(self, step):
        m = SessionTerminationRequest()
        m.header.application_id = APP_S6B
        m.session_id = self.session(step)
        self.origin(m)
        m.destination_realm = b"localdomain"
        m.auth_application_id = APP_S6B
        m.termination_cause = 1
        if step.get("user_name"):
            m.user_name = step["user_name"]
        elif step.get("imsi"):
            m.user_name = step["imsi"] + "@nai.epc.mnc001.mcc001.3gppnetwork.org"
        hbh = self.send(m, APP_S6B)
        return self.summary(self.wait_answer(hbh))

    def ecr(self, step):
        m = MeIdentityCheckRequest()
        m.header.application_id = APP_S13
        m.session_id = self.session(step)
        m.auth_session_state = 1
        self.origin(m)
        m.destination_realm = b"localdomain"
        if step.get("imsi") is not None:
            m.user_name = step["imsi"]
        if step.get("terminal", True):
            kids = []
            if step.get("imei") is not None:
                kids.append(Avp.new(AVP_TGPP_IMEI, VENDOR_TGPP, value=step["imei"]))
            if step.get("meid"):
                kids.append(Avp.new(AVP_TGPP_3GPP2_MEID, VENDOR_TGPP,
                                    value=bytes.fromhex(step["meid"])))
            if step.get("sv"):
                kids.append(Avp.new(AVP_TGPP_SOFTWARE_VERSION, VENDOR_TGPP, value=step["sv"]))
            m.append_avp(Avp.new(AVP_TGPP_TERMINAL_INFORMATION, VENDOR_TGPP, value=kids))
        hbh = self.send(m, APP_S13)
        return self.summary(self.wait_answer(hbh, step.get("timeout", 10)))

    def dwr(self, step):
        m = DeviceWatchdogRequest()
        self.origin(m)
        hbh = self.send(m)
        return self.summary(self.wait_answer(hbh))

    def dpr(self, step):
        m = DisconnectPeerRequest()
        self.origin(m)
        m.disconnect_cause = step.get("cause", 0)
        hbh = self.send(m)
        out = self.summary(self.wait_answer(hbh))
        out["closed"] = self.closed_soon(3)
        return out

    def wait_dwr(self, step):
        deadline = time.monotonic() + step.get("timeout", 15)
        before = self.dwr_seen
        while self.dwr_seen == before:
            m = self.read_message(deadline)
            if m is None:
                break
            self.answer_server_request(m)
        return {"got_dwr": self.dwr_seen > before}

    def wait_dpr(self, step):
        deadline = time.monotonic() + step.get("timeout", 10)
        while self.pending_dpr is None:
            m = self.read_message(deadline)
            if m is None:
                break
            self.answer_server_request(m)
        if self.pending_dpr is None:
            return {"got_dpr": False, "closed": self.closed}
        dpr = self.pending_dpr
        cause = next((x.value for x in dpr.avps if x.code == 273), None)
        a = DisconnectPeerAnswer()
        a.header.hop_by_hop_identifier = dpr.header.hop_by_hop_identifier
        a.header.end_to_end_identifier = dpr.header.end_to_end_identifier
        a.result_code = 2001
        self.origin(a)
        self.sock.sendall(a.as_bytes())
        return {"got_dpr": True, "cause": cause, "closed": self.closed_soon(5)}

    def pipeline(self, step):
        n = step["count"]
        base = int(step["imsi_base"])
        sent = {}
        blob = b""
        for i in range(n):
            m = self.ccr_message({"type": 1, "imsi": str(base + i), "imei": step.get("imei")})
            m.header.application_id = APP_GX
            self.hbh = (self.hbh + 1) & 0xFFFFFFFF
            self.e2e = (self.e2e + 1) & 0xFFFFFFFF
            m.header.hop_by_hop_identifier = self.hbh
            m.header.end_to_end_identifier = self.e2e
            sent[self.hbh] = True
            blob += m.as_bytes()
        self.sock.sendall(blob)
        codes = {}
        answered = 0
        unmatched = 0
        deadline = time.monotonic() + step.get("timeout", 30)
        while answered < n:
            m = self.read_message(deadline)
            if m is None:
                break
            if self.answer_server_request(m):
                continue
            if sent.pop(m.header.hop_by_hop_identifier, None):
                answered += 1
                rc = self.summary(m)["result_code"]
                codes[str(rc)] = codes.get(str(rc), 0) + 1
            else:
                unmatched += 1
        return {"count": n, "answered": answered, "codes": codes,
                "all_matched": unmatched == 0 and not sent}

    def expect_close(self, step):
        return {"closed": bool(self.closed_soon(step.get("timeout", 5)))}


def stream(cfg):
    """The "stream" mode: one step per stdin line, one result per stdout line."""
    first = json.loads(sys.stdin.readline())
    cfg.update(first)
    c = Client(cfg)
    ops = {"cer": c.cer, "ccr": c.ccr, "aar": c.aar, "ecr": c.ecr, "dwr": c.dwr}
    for line in sys.stdin:
        if not line.strip():
            continue
        step = json.loads(line)
        try:
            r = ops[step["op"]](step)
        except OSError as e:
            r = {"result_code": None, "error": str(e)}
        r["op"] = step["op"]
        r["closed"] = c.closed
        sys.stdout.write(json.dumps(r, default=str) + "\n")
        sys.stdout.flush()
        if c.closed:
            return


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--stream":
        stream({})
        return
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else json.load(sys.stdin)
    c = Client(cfg)
    results = []
    ops = {"cer": c.cer, "ccr": c.ccr, "aar": c.aar, "str": c.str_, "ecr": c.ecr, "dwr": c.dwr,
           "dpr": c.dpr, "wait_dwr": c.wait_dwr, "wait_dpr": c.wait_dpr,
           "pipeline": c.pipeline, "expect_close": c.expect_close}
    for step in cfg["steps"]:
        r = ops[step["op"]](step)
        r["op"] = step["op"]
        r["dwr_received"] = c.dwr_seen
        results.append(r)
    json.dump({"results": results}, sys.stdout, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
