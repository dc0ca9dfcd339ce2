#!/usr/bin/env python3
"""Driver behind scripts/bench-cluster.sh (stdlib only): cluster mode on this machine.

Starts three etcd members (Debian's etcd-server) on loopback ports in a temporary directory and
two imei-lockd nodes on them (`[cluster] backend = "etcd"`), plus an embedded-mode daemon for the
comparison, and measures:

  a. RADIUS answers per node CPU-second, etcd mode vs embedded mode, same closed-loop load
     (imei-lock-load), SIMs locked and bound (the steady state: a match, read from the node's
     cache); the measured daemon pinned to one CPU and the load generator to the other;
  b. visibility of a processed change: PUT imei-management on one node -> the request reported
     processed (GET /v1/requests/ID?wait) -> the other node answers a RADIUS session per the
     new value (p50/p99; a first answer per the old value is a stale read and counted);
  c. first binds per second through etcd: fresh locked SIMs, first sessions from as many devices,
     half through each node at once;
  d. bulk import (POST /v1/sims:import) into etcd, SIMs/s, for each `--txn-ops` value (the
     members' --max-txn-ops and the nodes' cluster.etcd.max_txn_ops);
  e. (full mode) with 1M SIMs in etcd: each member's database size (endpoint status; also after
     compaction and defragmentation) and RSS, and a node's cache rebuild from empty (the log line
     "cache rebuilt from etcd", elapsed_ms).

Around every phase it records the CPU seconds of each process (etcd members, nodes) and of the
whole machine (/proc/stat: other sessions share it), and each member's WAL fsyncs and backend
commits (etcd's /metrics): that is what says which of them limits a figure. Prints a table and
writes bench-results/cluster.{json,md}. Nothing here asserts: it is a benchmark, not a test.

Environment: BIN_DIR (where imei-lockd and imei-lock-load are), OUT (results directory).
"""

import argparse
import hashlib
import hmac
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the shared helpers: processes, /proc, load runs, output)

PREFIX = "/bench"
# Disjoint IMSI ranges per phase (15 digits, the load generator's SIM i = base + i).
BASE_STEADY = B.IMSI_BASE  # a: 1010000000000..
BASE_VIS = 1_020_000_000_000  # b: one SIM
BASE_BIND = 1_030_000_000_000  # c
BASE_IMPORT = 1_100_000_000_000  # d: one range of 10M per --txn-ops value
IMEI_OTHER = "4901542032375101"  # a device no SIM is bound to (IMEISV)


class NoPin:
    """Processes left to the scheduler (the cluster phases run 3 members, 2 nodes and the load
    generators on the machine's CPUs together)."""

    on = False

    @staticmethod
    def server(cmd):
        return cmd

    @staticmethod
    def load(cmd):
        return cmd

    @staticmethod
    def describe():
        return "not pinned"


def taskset(pid, cpus):
    """Re-pins every thread of a running process."""
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, capture_output=True)


def proc_stat():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return total - idle, total


def human_bytes(n):
    return f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


# ---------------------------------------------------------------- etcd


class Etcd:
    """Three etcd members on loopback ports, each with its data directory and log in `tmp`."""

    def __init__(self, tmp, n, txn_ops, request_bytes, quota_bytes):
        self.tmp = tmp
        self.n = n
        self.members = []
        ports = set()
        while len(ports) < 2 * n:
            ports.add(B.free_port())
        ports = sorted(ports)
        for i in range(n):
            self.members.append({"name": f"m{i}", "client": ports[2 * i], "peer": ports[2 * i + 1],
                                 "data": os.path.join(tmp, f"m{i}.etcd"),
                                 "log": os.path.join(tmp, f"m{i}.log"), "proc": None})
        self.flags = ["--max-txn-ops", str(txn_ops), "--quota-backend-bytes", str(quota_bytes)]
        if request_bytes:
            self.flags += ["--max-request-bytes", str(request_bytes)]

    def endpoints(self):
        return [f"http://127.0.0.1:{m['client']}" for m in self.members]

    def start(self):
        cluster = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        token = f"imei-lockd-bench-{os.getpid()}-{time.time_ns()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        for m in self.members:
            c, p = f"http://127.0.0.1:{m['client']}", f"http://127.0.0.1:{m['peer']}"
            cmd = ["etcd", "--name", m["name"], "--data-dir", m["data"],
                   "--listen-client-urls", c, "--advertise-client-urls", c,
                   "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                   "--initial-cluster", cluster, "--initial-cluster-state", "new",
                   "--initial-cluster-token", token, "--logger", "zap", "--log-outputs", "stderr",
                   "--log-level", "warn"] + self.flags
            m["proc"] = B.Proc(m["name"], cmd, m["log"], env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            for m in self.members:
                if not m["proc"].alive():
                    raise SystemExit(f"etcd {m['name']} exited; see {m['log']}")
            if self.ctl(["endpoint", "health"], check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit(f"etcd not healthy within 60 s; see {self.tmp}/m*.log")

    def ctl(self, args, check=True, timeout=600):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
        env["ETCDCTL_API"] = "3"
        r = subprocess.run(["etcdctl", f"--endpoints={','.join(self.endpoints())}"] + args,
                           capture_output=True, text=True, env=env, timeout=timeout)
        if check and r.returncode != 0:
            raise SystemExit(f"etcdctl {' '.join(args)}: {r.stderr.strip()}")
        return r

    def status(self):
        """Per member: dbSize, dbSizeInUse (bytes), revision, raftIndex, leader or not."""
        r = self.ctl(["endpoint", "status", "-w", "json"])
        out = []
        for e in json.loads(r.stdout):
            s = e["Status"]
            out.append({"endpoint": e["Endpoint"], "db_bytes": s.get("dbSize", 0),
                        "db_in_use_bytes": s.get("dbSizeInUse", 0),
                        "revision": s["header"]["revision"], "raft_index": s.get("raftIndex", 0),
                        "leader": s.get("leader") == s["header"]["member_id"]})
        return out

    def metrics(self, m):
        """WAL fsyncs, backend commits (count, seconds) and proposals of one member."""
        want = {"etcd_disk_wal_fsync_duration_seconds_count": "wal_fsyncs",
                "etcd_disk_wal_fsync_duration_seconds_sum": "wal_fsync_s",
                "etcd_disk_backend_commit_duration_seconds_count": "backend_commits",
                "etcd_disk_backend_commit_duration_seconds_sum": "backend_commit_s",
                "etcd_server_proposals_committed_total": "proposals"}
        out = {v: 0.0 for v in want.values()}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m['client']}/metrics", timeout=5) as r:
                for line in r.read().decode().splitlines():
                    name, _, val = line.partition(" ")
                    if name in want:
                        out[want[name]] = float(val)
        except (urllib.error.URLError, OSError):
            pass
        return out

    def stop(self):
        for m in self.members:
            if m["proc"]:
                m["proc"].stop()


# ---------------------------------------------------------------- nodes


class Node(B.Daemon):
    """imei-lockd in cluster mode: bench.Daemon's configuration plus `[cluster]`, JSON logs at
    warn except the cache follower (its rebuild line is figure e)."""

    def __init__(self, bins, tmp, name, etcd, txn_ops):
        super().__init__(bins, NoPin(), tmp, name=name)
        self.etcd, self.txn_ops = etcd, txn_ops
        self.write_config()

    def write_config(self):
        with open(self.config) as f:
            text = f.read().split("[cluster]")[0]
        text = text.replace('[log]\nlevel = "warn"',
                            '[log]\nformat = "json"\nlevel = "warn,imei_lockd::store::etcd::follow=info"')
        eps = ", ".join(f'"{e}"' for e in self.etcd.endpoints())
        text += (f'[cluster]\nbackend = "etcd"\nnode_name = "{self.name}"\n'
                 f'[cluster.etcd]\nendpoints = [{eps}]\nprefix = "{PREFIX}"\n'
                 f"max_txn_ops = {self.txn_ops}\n")
        with open(self.config, "w") as f:
            f.write(text)

    def cluster(self):
        return json.loads(B.http("GET", self.url("/v1/cluster"), timeout=10)[1])

    def wait_serving(self, nodes, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.proc.alive():
                raise SystemExit(f"{self.name} exited; see {self.tmp}/daemon.log")
            try:
                c = self.cluster()
                serving = {n["name"] for n in c.get("nodes", []) if n.get("serving")}
                holder = c.get("singletons", {}).get("provisioning")
                if c.get("serving") and len(serving) >= nodes and holder in serving:
                    return c
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} not serving within {timeout} s")

    def log_events(self, message):
        out = []
        with open(os.path.join(self.tmp, "daemon.log")) as f:
            for line in f:
                if message in line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        return out


def post_imports(node, first, n, file_rows, value="lock"):
    """POST /v1/sims:import in files of `file_rows`; returns (seconds from the first POST until
    the last request is processed, the request ids, seconds spent in the POSTs)."""
    t0 = time.time()
    ids, posting = [], 0.0
    for start in range(0, n, file_rows):
        rows = range(start, min(n, start + file_rows))
        body = "imsi,msisdn,profile,imei_management\n" + "".join(
            f"{first + i:015},,,{value}\n" for i in rows)
        p0 = time.time()
        st, b = B.http("POST", node.url("/v1/sims:import"), body.encode())
        posting += time.time() - p0
        if st != 202:
            raise SystemExit(f"import: HTTP {st} {b[:200]!r}")
        ids.append(json.loads(b)["request_id"])
    wait_processed(node, ids[-1])
    return time.time() - t0, ids, posting


def wait_processed(node, rid, timeout=3600):
    deadline = time.time() + timeout
    unknown_until = time.time() + 30
    while time.time() < deadline:
        try:
            st, b = B.http("GET", node.url(f"/v1/requests/{rid}?wait=30"), timeout=60)
        except urllib.error.HTTPError as e:
            body = e.read()[:300]
            # 202 means committed in etcd; the node's cache may show it a little later when
            # the machine is overloaded (its commit waits at most request_timeout_ms for it).
            if e.code == 404 and time.time() < unknown_until:
                B.log(f"request {rid}: not yet in {node.name}'s cache; asking again")
                time.sleep(0.2)
                continue
            raise SystemExit(f"request {rid}: HTTP {e.code} {body!r}")
        doc = json.loads(b)
        if doc["status"] == "processed":
            return doc
        if doc["status"] == "failed":
            raise SystemExit(f"request {rid} failed: {doc}")
    raise SystemExit(f"request {rid} not processed within {timeout} s")


# ---------------------------------------------------------------- accounting


class Meter:
    """CPU seconds of named processes, of the machine, and etcd's disk counters, between
    `start()` and `stop()`."""

    def __init__(self, etcd, procs):
        self.etcd, self.procs = etcd, procs

    def snap(self):
        cpu = {}
        for name, p in self.procs.items():
            try:
                cpu[name] = p.cpu()
            except (OSError, IndexError, ValueError):
                cpu[name] = 0.0
        return {"t": time.time(), "cpu": cpu, "machine": proc_stat(),
                "etcd": {m["name"]: self.etcd.metrics(m) for m in self.etcd.members}}

    def start(self):
        self.s0 = self.snap()
        return self

    def stop(self, load_cpu_s=0.0):
        """The phase's figures; `load_cpu_s`: the load generators' CPU seconds (children of this
        driver, not in `procs`), so they do not count as other processes."""
        s1 = self.snap()
        s0 = self.s0
        wall = max(s1["t"] - s0["t"], 1e-9)
        busy = (s1["machine"][0] - s0["machine"][0]) / max(s1["machine"][1] - s0["machine"][1], 1)
        cpu = {k: round(s1["cpu"][k] - s0["cpu"].get(k, 0.0), 2) for k in s1["cpu"]}
        disk = {}
        for name, m1 in s1["etcd"].items():
            m0 = s0["etcd"].get(name, {})
            d = {k: m1[k] - m0.get(k, 0.0) for k in m1}
            disk[name] = {
                "wal_fsyncs_per_s": round(d["wal_fsyncs"] / wall, 1),
                "wal_fsync_ms": round(1000 * d["wal_fsync_s"] / max(d["wal_fsyncs"], 1), 2),
                "backend_commits_per_s": round(d["backend_commits"] / wall, 1),
                "proposals_per_s": round(d["proposals"] / wall, 1),
            }
        ours = sum(cpu.values())
        return {"wall_s": round(wall, 2), "cpu_s": cpu,
                "cores_used": {k: round(v / wall, 2) for k, v in cpu.items()},
                "etcd_cores": round(sum(v for k, v in cpu.items() if k.startswith("m")) / wall, 2),
                "nodes_cores": round(sum(v for k, v in cpu.items() if not k.startswith("m")) / wall, 2),
                "machine_busy": round(busy, 3),
                "load_cores": round(load_cpu_s / wall, 2),
                "others_cores": round(max(busy * (os.cpu_count() or 1) - (ours + load_cpu_s) / wall,
                                          0.0), 2),
                "etcd_disk": disk}


def limits_text(m):
    """One line saying where the CPU went and how hard the disk was hit during a phase."""
    disk = next(iter(m["etcd_disk"].values()), {})
    load = f"load generator {m['load_cores']:.2f}, " if m.get("load_cores") else ""
    return (f"CPU: etcd members {m['etcd_cores']:.2f} cores, nodes {m['nodes_cores']:.2f}, {load}"
            f"other processes {m['others_cores']:.2f}, machine {m['machine_busy'] * 100:.0f} % busy "
            f"of {os.cpu_count()}; etcd WAL fsyncs {disk.get('wal_fsyncs_per_s', 0):.0f}/s per member "
            f"({disk.get('wal_fsync_ms', 0):.2f} ms each), {disk.get('proposals_per_s', 0):.0f} "
            f"proposals/s")


# ---------------------------------------------------------------- RADIUS probe (figure b)


def access_request(ident, imsi, imeisv, secret):
    """Access-Request with Message-Authenticator (first), User-Name, 3GPP-IMSI, 3GPP-IMEISV."""
    def attr(t, v):
        return bytes([t, len(v) + 2]) + v

    def vsa(t, v):
        return attr(26, struct.pack("!I", 10415) + bytes([t, len(v) + 2]) + v)

    attrs = attr(80, bytes(16)) + attr(1, imsi.encode()) + vsa(1, imsi.encode()) + vsa(20, imeisv.encode())
    pkt = bytes([1, ident]) + struct.pack("!H", 20 + len(attrs)) + os.urandom(16) + attrs
    ma = hmac.new(secret.encode(), pkt, hashlib.md5).digest()
    return pkt[:22] + ma + pkt[38:]


class Radius:
    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(1.0)
        self.ident = 0

    def ask(self, port, imsi, imeisv):
        """The answer's code (2 accept, 3 reject) or None."""
        self.ident = (self.ident + 1) % 256
        self.s.sendto(access_request(self.ident, imsi, imeisv, B.SECRET), ("127.0.0.1", port))
        while True:
            try:
                data, _ = self.s.recvfrom(4096)
            except socket.timeout:
                return None
            if len(data) >= 2 and data[1] == self.ident:
                return data[0]


# ---------------------------------------------------------------- phases


def phase_visibility(nodes, rounds):
    """b. PUT value on node r%2, processed, then sessions on the other node until it answers per
    the new value. The SIM is bound to one device; another device is accepted exactly when the
    value is disabled."""
    imsi = f"{BASE_VIS:015}"
    bound = "3520990017614823"
    a = nodes[0]
    st, b = B.http("PUT", a.url(f"/v1/sims/{imsi}"), json.dumps({"imei_management": "lock"}).encode())
    wait_processed(a, json.loads(b)["request_id"])
    rad = Radius()
    for n in nodes:
        if rad.ask(n.ports["auth"], imsi, bound) != 2:
            raise SystemExit(f"visibility: the bound device is not accepted on {n.name}")
    submit, processed, total, stale, probes = [], [], [], 0, 0
    seen = {"disabled": [], "lock": []}
    for r in range(rounds):
        api, other = nodes[r % 2], nodes[1 - r % 2]
        value = "disabled" if r % 2 == 0 else "lock"
        want = 2 if value == "disabled" else 3
        t0 = time.perf_counter()
        st, b = B.http("PUT", api.url(f"/v1/sims/{imsi}/imei-management"),
                       json.dumps({"value": value}).encode())
        t1 = time.perf_counter()
        wait_processed(api, json.loads(b)["request_id"])
        t2 = time.perf_counter()
        first = True
        while True:
            code = rad.ask(other.ports["auth"], imsi, IMEI_OTHER)
            probes += 1
            if code == want:
                break
            if first:
                stale += 1
            first = False
            if time.perf_counter() - t2 > 10:
                raise SystemExit(f"visibility: {other.name} never answered per {value}")
        t3 = time.perf_counter()
        submit.append((t1 - t0) * 1000)
        processed.append((t2 - t0) * 1000)
        seen[value].append((t3 - t2) * 1000)
        total.append((t3 - t0) * 1000)

    def q(v):
        return {"p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                "max_ms": round(max(v), 2)}

    return {"rounds": rounds, "put_202": q(submit), "put_to_processed": q(processed),
            "processed_to_other_node_answers": q(seen["disabled"] + seen["lock"]),
            "processed_to_accept": q(seen["disabled"]), "processed_to_reject": q(seen["lock"]),
            "put_to_other_node_answers": q(total),
            "stale_first_answers": stale, "probes": probes}


def phase_steady(a, bins, tmp, nodes, etcd, pin):
    """a. The same closed-loop RADIUS load on an embedded daemon and on node A, each pinned to
    CPU 0 with the load generator on CPU 1; best of `rounds` per mode."""
    load = B.Load(bins, pin)
    sims = a.steady_sims
    args = ["--sims", sims, "--window", a.window, "--sockets", 2, "--secret", B.SECRET,
            "--imsi-base", BASE_STEADY]
    emb = B.Daemon(bins, NoPin(), os.path.join(tmp, "embedded"), name="embedded")
    emb.start()
    res = {"embedded": [], "etcd": []}
    node = nodes[0]
    try:
        emb.import_sims(sims)
        post_imports(node, BASE_STEADY, sims, a.file_rows)
        for d in (emb, node):
            target = ["radius", "--target", f"127.0.0.1:{d.ports['auth']}"] + args
            B.wait_answering(load, target, d.name)
            # One pass binds every SIM to its device (through etcd on the node).
            load.run(target + ["--count", sims, "--duration", 600, "--timeout-ms", 5000])
        for r in range(a.rounds):
            for mode, d in (("embedded", emb), ("etcd", node)):
                taskset(d.proc.pid, str(pin.server_cpu))
                try:
                    target = ["radius", "--target", f"127.0.0.1:{d.ports['auth']}"] + args
                    m = Meter(etcd, {"m0": etcd.members[0]["proc"], "m1": etcd.members[1]["proc"],
                                     "m2": etcd.members[2]["proc"], "node-a": nodes[0].proc,
                                     "node-b": nodes[1].proc, "embedded": emb.proc}).start()
                    r1 = B.measure(load, d.proc, target + ["--duration", a.seconds])
                    r1["meter"] = m.stop(r1["load_cpu_s"])
                finally:
                    taskset(d.proc.pid, ",".join(str(c) for c in sorted(os.sched_getaffinity(0))))
                res[mode].append(r1)
                B.log(f"a. {mode} round {r + 1}: {B.fmt_int(r1['answers_per_s'])} answers/s, "
                      f"{B.fmt_int(r1['answers_per_server_cpu_s'])} per CPU-s "
                      f"(busy {r1['server_cpu_util'] * 100:.0f} %), codes {r1['codes']}")
    finally:
        emb.stop()
        shutil.rmtree(emb.tmp, ignore_errors=True)
    best = {k: max(v, key=lambda x: x["answers_per_server_cpu_s"]) for k, v in res.items()}
    return {"sims": sims, "runs": res, "best": best,
            "ratio": B.ratio(best["etcd"]["answers_per_server_cpu_s"],
                             best["embedded"]["answers_per_server_cpu_s"])}


def phase_binds(a, bins, nodes, etcd):
    """c. Fresh locked SIMs, then their first sessions, half through each node at once."""
    n = a.bind_sims
    post_imports(nodes[0], BASE_BIND, n, a.file_rows)
    load = B.Load(bins, NoPin())
    half = n // 2
    before = [bind_outcomes(d) for d in nodes]
    out = [None, None]

    def run(i):
        d = nodes[i]
        out[i] = load.run(["radius", "--target", f"127.0.0.1:{d.ports['auth']}", "--sims", half,
                           "--count", half, "--imsi-base", BASE_BIND + i * half,
                           "--imei-base", B.IMEI_BASE + 50_000_000 + i * half, "--window", a.window,
                           "--sockets", 2, "--secret", B.SECRET, "--timeout-ms", 5000,
                           "--duration", 3600])

    m = Meter(etcd, procs_of(etcd, nodes)).start()
    g0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    g1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter = m.stop(g1.ru_utime + g1.ru_stime - g0.ru_utime - g0.ru_stime)
    accepts = sum(o["codes"].get("accept", 0) for o in out if o)
    after = [bind_outcomes(d) for d in nodes]
    outcomes = {k: sum(a_.get(k, 0) - b_.get(k, 0) for a_, b_ in zip(after, before))
                for k in set().union(*after)}
    return {"sims": n, "wall_s": round(wall, 2), "accepts": accepts,
            "binds_per_s": round(accepts / wall, 1), "loads": out, "bind_commits": outcomes,
            "meter": meter}


def bind_outcomes(d):
    out = {}
    for line in d.metrics().splitlines():
        m = re.match(r'imei_lockd_bind_commits_total\{outcome="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def procs_of(etcd, nodes):
    p = {m["name"]: m["proc"] for m in etcd.members}
    for d in nodes:
        p[d.name] = d.proc
    return p


def phase_import(a, nodes, etcd, txn_ops, first, n):
    """d. POST /v1/sims:import of `n` fresh locked SIMs on node A."""
    m = Meter(etcd, procs_of(etcd, nodes)).start()
    secs, ids, posting = post_imports(nodes[0], first, n, a.file_rows)
    meter = m.stop()
    # What the etcd store keeps in flight (src/store/etcd/mod.rs: 2 048 writes, 1 to 16).
    in_flight = min(max(2048 // txn_ops, 1), 16)
    # SIMs per transaction (src/store/etcd/ledger.rs max_batch_sims): the new SIMs in one bundle
    # key with one compare per run of fresh IMSIs (src/store/etcd/bundle.rs), and the batch's
    # event and charge bundles.
    per_txn = txn_ops - 14 if txn_ops >= 24 else max(txn_ops // 3, 1)
    return {"txn_ops": txn_ops, "sims_per_txn": per_txn, "in_flight": in_flight,
            "sims": n, "files": len(ids),
            "file_rows": a.file_rows, "seconds": round(secs, 2),
            "sims_per_s": round(n / secs, 1), "posting_s": round(posting, 2), "meter": meter}


def phase_size_and_rebuild(a, nodes, etcd):
    """e. etcd's database size and member RSS with everything imported so far; node B's cache
    rebuilt from empty."""
    out = {"status": etcd.status(),
           "member_rss_bytes": {m["name"]: m["proc"].rss() for m in etcd.members}}
    # A range answer's count is the whole range's, whatever the limit.
    keys = etcd.ctl(["get", PREFIX + "/", "--prefix", "--keys-only", "--limit", "1", "-w", "json"],
                    timeout=600)
    out["keys"] = json.loads(keys.stdout).get("count", 0)
    rev = max(s["revision"] for s in out["status"])
    t0 = time.time()
    # etcdctl's default --command-timeout is 5 s: a physical compaction of 1M keys on a busy
    # 2-core machine takes longer.
    etcd.ctl(["compact", str(rev), "--physical", "--command-timeout=600s"], timeout=1800)
    etcd.ctl(["defrag", "--command-timeout=600s"], timeout=1800)
    out["compact_defrag_s"] = round(time.time() - t0, 1)
    out["status_compacted"] = etcd.status()
    out["member_rss_compacted_bytes"] = {m["name"]: m["proc"].rss() for m in etcd.members}
    b = nodes[1]
    b.stop()
    shutil.rmtree(b.data, ignore_errors=True)
    m = Meter(etcd, procs_of(etcd, nodes)).start()
    t0 = time.time()
    b.start()
    b.wait_serving(2, timeout=3600)
    out["rebuild_to_serving_s"] = round(time.time() - t0, 1)
    out["rebuild_meter"] = m.stop()
    lines = b.log_events("cache rebuilt from etcd")
    if lines:
        f = lines[-1].get("fields", lines[-1])
        out["rebuild_elapsed_ms"] = f.get("elapsed_ms")
        out["rebuild_keys"] = f.get("keys")
    out["node_rss_after_rebuild_bytes"] = b.proc.rss()
    out["node_cache_bytes"] = B.dir_bytes(b.data)[0]
    return out


# ---------------------------------------------------------------- output


def per(meter, prefix, count, scale):
    """CPU seconds of the processes named `prefix`* per item, times `scale`."""
    cpu = sum(v for k, v in meter["cpu_s"].items() if k.startswith(prefix))
    return cpu / max(count, 1) * scale


def table(doc):
    m = doc["machine"]
    p = doc["params"]
    lines = [
        f"Cluster mode: 3 etcd {doc['etcd_version']} members and 2 imei-lockd nodes on this "
        f"{m['cpus']}-core machine ({'quick' if p['quick'] else 'full'} run, "
        f"--max-txn-ops {p['etcd_txn_ops']}, --max-request-bytes "
        f"{p['request_bytes'] or 'default (1.5 MiB)'}"
        f"{', members with GOGC=' + p['etcd_gogc'] if p.get('etcd_gogc') else ''}); "
        f"{m['date_utc']}, load average {m['loadavg']}. Shared machine: figures are noisy.",
        "",
        "| figure | measured | target | what limits it |",
        "|---|---|---|---|",
    ]
    r = doc["results"]
    if "steady" in r:
        s = r["steady"]
        e, c = s["best"]["embedded"], s["best"]["etcd"]
        lines.append(
            f"| a. RADIUS answers per node CPU-second, etcd vs embedded ({B.fmt_int(s['sims'])} "
            f"bound SIMs, closed loop, best of {p['rounds']}) | {s['ratio'] * 100:.0f} % "
            f"({B.fmt_int(c['answers_per_server_cpu_s'])} vs {B.fmt_int(e['answers_per_server_cpu_s'])}; "
            f"{B.fmt_int(c['answers_per_s'])} vs {B.fmt_int(e['answers_per_s'])} answers/s) | ≥ 80 % "
            f"| the node's CPU (pinned, busy {c['server_cpu_util'] * 100:.0f} % vs "
            f"{e['server_cpu_util'] * 100:.0f} %): a match reads the node's cache only; "
            f"{limits_text(c['meter'])} |")
    if "visibility" in r:
        v = r["visibility"]
        lines.append(
            f"| b. PUT value → processed ({v['rounds']} rounds, API and processor alternate) | "
            f"p50 {v['put_to_processed']['p50_ms']:.1f} ms, p99 {v['put_to_processed']['p99_ms']:.1f} ms "
            f"(202 alone: p50 {v['put_202']['p50_ms']:.1f} ms) | p99 ≤ 50 ms | sequential etcd "
            f"commits (append, apply, node publications), each a raft round with a WAL fsync on "
            f"every member |")
        acc, rej = v["processed_to_accept"], v["processed_to_reject"]
        lines.append(
            f"| b. processed → the other node answers per the new value | stale first answers: "
            f"{v['stale_first_answers']} of {v['rounds']}; → disabled (accept): p50 "
            f"{acc['p50_ms']:.2f} ms, p99 {acc['p99_ms']:.2f} ms; → lock (reject): p50 "
            f"{rej['p50_ms']:.2f} ms, p99 {rej['p99_ms']:.2f} ms | p99 ≤ 50 ms | processed is "
            f"reported once every serving node applied the change, so this is one session: an "
            f"accept is a RADIUS round trip; a reject also commits its imei_mismatch event to "
            f"etcd before answering |")
    if "binds" in r:
        b = r["binds"]
        m = b["meter"]
        lines.append(
            f"| c. first binds through etcd ({B.fmt_int(b['sims'])} fresh locked SIMs, half "
            f"through each node) | {B.fmt_int(b['binds_per_s'])}/s ({B.fmt_int(b['accepts'])} "
            f"accepted; commits {json.dumps(b['bind_commits'], sort_keys=True)}) | — | one etcd "
            f"transaction, so one raft proposal, per bind: CPU per bind: etcd members "
            f"{per(m, 'm', b['accepts'], 1e3):.2f} ms, nodes {per(m, 'node', b['accepts'], 1e3):.2f} ms; "
            f"{limits_text(m)} |")
    for d in r.get("imports", []):
        m = d["meter"]
        lines.append(
            f"| d. bulk import into etcd, max_txn_ops {d['txn_ops']} ({d['sims_per_txn']} SIMs "
            f"per transaction, {d['in_flight']} in flight; {B.fmt_int(d['sims'])} SIMs in "
            f"{d['files']} files) | "
            f"{B.fmt_int(d['sims_per_s'])} SIMs/s | ≥ 50 000/s | CPU per SIM: etcd members "
            f"{per(m, 'm', d['sims'], 1e6):.0f} µs (3 bundle keys and a range compare a transaction, each applied by 3 members), nodes "
            f"{per(m, 'node', d['sims'], 1e6):.0f} µs; {limits_text(m)} |")
    if "size" in r:
        z = r["size"]
        db = max(s["db_bytes"] for s in z["status"])
        dbc = max(s["db_bytes"] for s in z["status_compacted"])
        rss = max(z["member_rss_bytes"].values())
        rssc = max(z["member_rss_compacted_bytes"].values())
        lines.append(
            f"| e. etcd with {B.fmt_int(doc['total_sims'])} SIMs ({B.fmt_int(z['keys'])} keys) | "
            f"database {human_bytes(db)} per member ({human_bytes(dbc)} after compaction + "
            f"defrag); member RSS {human_bytes(rss)} ({human_bytes(rssc)} after) | — | every "
            f"revision of every key until compacted (bbolt); etcd keeps its index in memory |")
        lines.append(
            f"| e. a node's cache rebuild from empty | {z.get('rebuild_elapsed_ms', 0) / 1000:.1f} s "
            f"({B.fmt_int(z.get('rebuild_keys') or 0)} keys), serving after "
            f"{z['rebuild_to_serving_s']:.1f} s; node RSS {human_bytes(z['node_rss_after_rebuild_bytes'])}, "
            f"cache {human_bytes(z['node_cache_bytes'])} | — | paginated reads at one revision "
            f"(2 000 keys a page) written to RocksDB; {limits_text(z['rebuild_meter'])} |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--name", help="results file name (default cluster, cluster-quick)")
    ap.add_argument("--phases", default="b,a,c,d,e", help="which figures, in this order")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--steady-sims", type=int)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--vis-rounds", type=int)
    ap.add_argument("--bind-sims", type=int)
    ap.add_argument("--import-sims", type=int)
    ap.add_argument("--txn-ops", default="128,1024",
                    help="bulk import: one run per value (members' --max-txn-ops is the largest)")
    ap.add_argument("--file-rows", type=int, default=40_000,
                    help="rows per import file (one etcd value each, about 20 bytes a row here: "
                         "below --max-request-bytes)")
    ap.add_argument("--request-bytes", type=int, default=0,
                    help="members' --max-request-bytes (default: etcd's, 1.5 MiB)")
    ap.add_argument("--quota-bytes", type=int, default=8 * 2**30, help="members' --quota-backend-bytes")
    ap.add_argument("--tmp", default=None, help="where etcd's and the nodes' data go")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    q = a.quick
    a.seconds = a.seconds or (5.0 if q else 10.0)
    a.rounds = a.rounds or (2 if q else 3)
    a.steady_sims = a.steady_sims or (20_000 if q else 50_000)
    a.vis_rounds = a.vis_rounds or (50 if q else 200)
    a.bind_sims = a.bind_sims or (10_000 if q else 20_000)
    a.import_sims = a.import_sims or (100_000 if q else 1_000_000)
    phases = [x.strip() for x in a.phases.split(",") if x.strip()]
    if q:
        phases = [x for x in phases if x != "e"]
    txn_list = [int(x) for x in a.txn_ops.split(",")]
    bin_dir = os.environ.get("BIN_DIR", os.path.join(B.ROOT, "target", "release"))
    bins = {b: os.path.join(bin_dir, b) for b in ("imei-lockd", "imei-lock-load")}
    for b, p in bins.items():
        if not os.access(p, os.X_OK):
            raise SystemExit(f"{p} not found: build it (cargo build --release) or set BIN_DIR")
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: install Debian's etcd-server and etcd-client "
                             "(scripts/setup.sh --test)")
    out = os.environ.get("OUT", os.path.join(B.ROOT, "bench-results"))
    version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    version = version.replace("etcd Version: ", "")

    # SIGTERM / SIGINT: unwind through the finally blocks, which stop every process started here.
    def bye(sig, _frame):
        raise SystemExit(f"signal {sig}")

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)

    tmp = tempfile.mkdtemp(prefix="bench-cluster-", dir=a.tmp)
    etcd = Etcd(tmp, 3, max(txn_list), a.request_bytes, a.quota_bytes)
    nodes = []
    results = {}
    total = 0
    try:
        etcd.start()
        B.log(f"etcd members up: {', '.join(etcd.endpoints())}")

        def start_nodes(txn_ops):
            for d in nodes:
                d.stop()
            nodes.clear()
            for name in ("node-a", "node-b"):
                d = Node(bins, os.path.join(tmp, name), name, etcd, txn_ops)
                nodes.append(d)
            for d in nodes:
                d.start()
            for d in nodes:
                d.wait_serving(2)

        def restart_nodes(txn_ops):
            for d in nodes:
                d.stop()
                d.txn_ops = txn_ops
                d.write_config()
                d.start()
            # A stopped node's lease (and the singletons it held) lives on for lease_ttl_s
            # (5 s): let it expire, so that the measured import does not wait for it.
            time.sleep(6)
            for d in nodes:
                d.wait_serving(2)

        start_nodes(txn_list[-1])
        pin = B.Pinning()
        for ph in phases:
            if ph == "b":
                results["visibility"] = v = phase_visibility(nodes, a.vis_rounds)
                total += 1
                B.log(f"b. PUT → processed p99 {v['put_to_processed']['p99_ms']} ms, → other node "
                      f"p99 {v['processed_to_other_node_answers']['p99_ms']} ms, stale {v['stale_first_answers']}")
            elif ph == "a":
                results["steady"] = s = phase_steady(a, bins, tmp, nodes, etcd, pin)
                total += a.steady_sims
                B.log(f"a. etcd / embedded answers per CPU-s: {s['ratio']}")
            elif ph == "c":
                results["binds"] = b = phase_binds(a, bins, nodes, etcd)
                total += a.bind_sims
                B.log(f"c. {B.fmt_int(b['binds_per_s'])} first binds/s")
            elif ph == "d":
                results["imports"] = []
                for k, ops in enumerate(txn_list):
                    restart_nodes(ops)
                    # The last value imports --import-sims; the others a tenth (at least
                    # 40 000), enough for a rate.
                    n = a.import_sims if k == len(txn_list) - 1 else max(a.import_sims // 10, 40_000)
                    d = phase_import(a, nodes, etcd, ops, BASE_IMPORT + k * 10_000_000, n)
                    results["imports"].append(d)
                    total += n
                    B.log(f"d. max_txn_ops {ops}: {B.fmt_int(d['sims_per_s'])} SIMs/s "
                          f"({d['seconds']} s; {limits_text(d['meter'])})")
            elif ph == "e":
                results["size"] = z = phase_size_and_rebuild(a, nodes, etcd)
                B.log(f"e. {json.dumps({k: v for k, v in z.items() if 'meter' not in k})}")
    finally:
        for d in nodes:
            d.stop()
        etcd.stop()
        if a.keep:
            B.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    doc = {"bench": "cluster", "machine": B.machine(), "etcd_version": version,
           "params": {"quick": q, "phases": phases, "seconds": a.seconds, "rounds": a.rounds,
                      "steady_sims": a.steady_sims, "window": a.window, "vis_rounds": a.vis_rounds,
                      "bind_sims": a.bind_sims, "import_sims": a.import_sims, "txn_ops": txn_list,
                      "etcd_txn_ops": max(txn_list), "file_rows": a.file_rows,
                      "request_bytes": a.request_bytes, "quota_bytes": a.quota_bytes,
                      "etcd_gogc": os.environ.get("GOGC")},
           "total_sims": total, "results": results}
    lines = table(doc)
    os.makedirs(out, exist_ok=True)
    kind = a.name or ("cluster-quick" if q else "cluster")
    with open(os.path.join(out, f"{kind}.json"), "w") as f:
        json.dump(doc, f, indent=2)
    with open(os.path.join(out, f"{kind}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nresults: {os.path.join(out, kind + '.json')}, {os.path.join(out, kind + '.md')}")


if __name__ == "__main__":
    main()
