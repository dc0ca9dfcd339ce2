#!/usr/bin/env python3
"""Captures RADIUS datagrams off two loopback UDP sockets for the `radius` fuzz target.

Usage: radius_capture.py OUTDIR AUTH_PORT ACCT_PORT COUNT

Binds 127.0.0.1:AUTH_PORT and 127.0.0.1:ACCT_PORT, never answers, and writes each of the first
COUNT datagrams received as two seed files: mode octet + datagram, where the mode octet is the
one imei_lockd::fuzzing::radius reads (bit 0 accounting port, bit 1 Message-Authenticator
required, bit 2 re-sign). `NN-PORT-asis` is verified as sent (radclient signed it with the fuzz
secret); `NN-PORT-resign` has bit 2 set, so that mutations of it still authenticate.
Exits after COUNT datagrams or 60 s.
"""

import os
import select
import socket
import sys
import time

out, auth_port, acct_port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
socks = {}
for port, acct in ((auth_port, 1), (acct_port, 0)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    socks[s] = "acct" if acct == 0 else "auth"
print("ready", flush=True)
n = 0
deadline = time.monotonic() + 60
while n < count and time.monotonic() < deadline:
    r, _, _ = select.select(list(socks), [], [], 1)
    for s in r:
        data, _ = s.recvfrom(65535)
        kind = socks[s]
        mode = (1 if kind == "acct" else 0) | (2 if kind == "auth" else 0)
        for suffix, m in (("asis", mode), ("resign", mode | 4)):
            with open(os.path.join(out, "%02d-%s-%s" % (n, kind, suffix)), "wb") as f:
                f.write(bytes([m]) + data)
        n += 1
print("captured", n, flush=True)
