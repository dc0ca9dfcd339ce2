#!/usr/bin/env bash
# Regenerates the fuzz seed corpora in fuzz/corpus/<target>/ from real peers:
#   radius:     radclient (freeradius-utils) Access-, Accounting-Request and Status-Server
#               datagrams, captured off loopback UDP sockets (scripts/fuzz/radius_capture.py);
#   diameter:   python-diameter 0.9.0 messages and whole connections (scripts/fuzz/diameter_seeds.py);
#   imei:       every accepted wire/text form and near misses;
#   csv_import: import files as imei-lockctl and operators write them;
#   store_value: records encoded by the store (written by `cargo test --lib fuzzing` helpers:
#               see fuzz/corpus/store_value/README).
# Needs scripts/setup.sh --test (radclient, python-diameter). Old seeds of the regenerated
# targets are replaced; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
SECRET=fuzz-secret   # imei_lockd::fuzzing::RADIUS_SECRET

# --- radius -----------------------------------------------------------------------------------
rm -rf "$C/radius" && mkdir -p "$C/radius"
AUTH=$((20000 + RANDOM % 20000)); ACCT=$((AUTH + 1))
IMSI=001010000000001
requests=(
  "auth|User-Name = \"$IMSI\"\n3GPP-IMSI = \"$IMSI\"\n3GPP-IMEISV = \"3520990017614823\"\nCalled-Station-Id = \"iot.apn\"\n3GPP-RAT-Type = EUTRAN\nMessage-Authenticator = 0x00"
  "auth|User-Name = \"$IMSI\"\n3GPP-IMSI = \"$IMSI\"\nCalling-Station-Id = \"46700000001\"\nNAS-IP-Address = 127.0.0.1\nFramed-Protocol = GPRS-PDP-Context\nMessage-Authenticator = 0x00"
  "auth|User-Name = \"$IMSI\"\nUser-Password = \"gprs\"\n3GPP-IMSI = \"$IMSI\"\n3GPP-IMEISV = \"35209900176148,23\"\nProxy-State = 0x01020304\nMessage-Authenticator = 0x00"
  "auth|User-Name = \"$IMSI\"\n3GPP-IMEISV = 0x5302990010671684"
  "acct|Acct-Status-Type = Start\nAcct-Session-Id = \"sess-1\"\nUser-Name = \"$IMSI\"\n3GPP-IMSI = \"$IMSI\"\n3GPP-IMEISV = \"3520990017614823\"\nFramed-IP-Address = 10.0.0.1"
  "acct|Acct-Status-Type = Interim-Update\nAcct-Session-Id = \"sess-1\"\nUser-Name = \"$IMSI\"\n3GPP-IMSI = \"$IMSI\"\n3GPP-IMEISV = \"4901542032375181\"\nAcct-Input-Octets = 1000"
  "acct|Acct-Status-Type = Stop\nAcct-Session-Id = \"sess-1\"\nUser-Name = \"$IMSI\"\n3GPP-IMSI = \"$IMSI\"\nAcct-Terminate-Cause = User-Request"
  "acct|Acct-Status-Type = Accounting-On\nNAS-Identifier = \"ggsn\""
  "status|Message-Authenticator = 0x00"
)
python3 scripts/fuzz/radius_capture.py "$C/radius" "$AUTH" "$ACCT" "${#requests[@]}" > /tmp/radius_capture.$$ &
cap=$!
trap 'kill "$cap" 2>/dev/null || true; rm -f /tmp/radius_capture.$$' EXIT
for _ in $(seq 50); do grep -q ready /tmp/radius_capture.$$ 2>/dev/null && break; sleep 0.1; done
for r in "${requests[@]}"; do
  cmd=${r%%|*}; attrs=${r#*|}
  port=$AUTH; [[ $cmd == acct ]] && port=$ACCT
  # No answer comes: one try, one-second timeout (radclient exits 1 on the timeout).
  printf '%b\n' "$attrs" | radclient -q -r 1 -t 1 "127.0.0.1:$port" "$cmd" "$SECRET" >/dev/null 2>&1 || true
done
wait "$cap"
echo "radius: $(ls "$C/radius" | wc -l) seeds"

# --- diameter ---------------------------------------------------------------------------------
rm -rf "$C/diameter"
python3 scripts/fuzz/diameter_seeds.py "$C/diameter"
echo "diameter: $(ls "$C/diameter" | wc -l) seeds"

# --- s13 --------------------------------------------------------------------------------------
rm -rf "$C/s13"
python3 scripts/fuzz/s13_seeds.py "$C/s13"
echo "s13: $(ls "$C/s13" | wc -l) seeds"

# --- imei -------------------------------------------------------------------------------------
rm -rf "$C/imei" && mkdir -p "$C/imei"
w() { printf '%b' "$2" > "$C/imei/$1"; }
w ascii16 '3520990017614823'
w ascii15 '352099001761481'
w ascii15-bad-luhn '352099001761482'
w ascii14 '35209900176148'
w comma-sv '35209900176148,23'
w comma15-sv '352099001761481,1'
w tbcd16 '\x53\x02\x99\x00\x71\x16\x84\x32'
w tbcd15 '\x53\x02\x99\x00\x71\x16\x84\xf1'
w digits16 '\x03\x05\x02\x00\x09\x09\x00\x00\x01\x07\x06\x01\x04\x08\x02\x03'
w short '3520990017'
echo "imei: $(ls "$C/imei" | wc -l) seeds"

# --- csv_import -------------------------------------------------------------------------------
rm -rf "$C/csv_import" && mkdir -p "$C/csv_import"
H='imsi,msisdn,profile,imei_management'
printf '%s\n001010000000001,46700000001,fleet,lock\n001010000000002,,,\n' "$H" > "$C/csv_import/basic"
printf '%s\r\n001010000000003,+46700000003,iot,pairing\r\n00101,,fleet,disabled\r\n' "$H" > "$C/csv_import/crlf"
printf '%s\n "001010000000004" , 1 ,"fleet", lock \n' "$H" > "$C/csv_import/quoted-trimmed"
printf '%s\n001010000000005,46700000005,unknown,lock\n' "$H" > "$C/csv_import/unknown-profile"
printf '%s\n001010000000006,1,2\n' "$H" > "$C/csv_import/short-row"
echo "csv_import: $(ls "$C/csv_import" | wc -l) seeds"

# --- store_value ------------------------------------------------------------------------------
# Encoded by the library itself (one file per record type); see integration-tests/fuzz_smoke.rs.
rm -rf "$C/store_value" && mkdir -p "$C/store_value"
IMEI_LOCKD_WRITE_STORE_SEEDS="$PWD/$C/store_value" cargo test --locked -q --test fuzz_smoke write_store_seeds -- --ignored >/dev/null
echo "store_value: $(ls "$C/store_value" | wc -l) seeds"
