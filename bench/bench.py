#!/usr/bin/env python3
"""Driver behind scripts/bench-radius.sh, bench-diameter.sh and bench-scale.sh (stdlib only).

Process lifecycle, CPU accounting from /proc, JSON and the printed table are simpler and safer
here than in bash. Every server is a real process started by this driver, pinned with taskset
to one CPU (the load generator to another) when the machine has two or more; every figure
comes from `imei-lock-load --json` and /proc.

Environment: BIN_DIR (where imei-lockd and imei-lock-load are), OUT (results directory).
"""

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-token"
SECRET = "testing123"
IMSI_BASE = 1_010_000_000_000
IMEI_BASE = 35_000_000_000_000


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- machine


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1."""
    while True:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields after the command: state is [0], utime is field 14 of stat(5) = [11], stime [12].
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def udp_snmp():
    """The Udp: counters of /proc/net/snmp as a dict."""
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def machine():
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg": [float(x) for x in load],
        "uptime": up,
        "kernel": os.uname().release,
    }


class Pinning:
    """Server on one CPU, load generator on another (taskset), when there are two."""

    def __init__(self):
        cpus = sorted(os.sched_getaffinity(0))
        self.on = len(cpus) >= 2 and shutil.which("taskset") is not None
        self.server_cpu = cpus[0]
        self.load_cpu = cpus[1] if len(cpus) > 1 else cpus[0]

    def server(self, cmd):
        return ["taskset", "-c", str(self.server_cpu)] + cmd if self.on else cmd

    def load(self, cmd):
        return ["taskset", "-c", str(self.load_cpu)] + cmd if self.on else cmd

    def describe(self):
        if self.on:
            return f"server on CPU {self.server_cpu}, load generator on CPU {self.load_cpu} (taskset)"
        return "not pinned (fewer than 2 CPUs or no taskset)"


# ---------------------------------------------------------------- processes


class Proc:
    """A server process; stopped with SIGTERM (then SIGKILL) by its own pid."""

    def __init__(self, name, cmd, logpath, env=None):
        self.name = name
        self.log = open(logpath, "w")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.p.pid
        # taskset execs the command, so the pid is the server's own.

    def alive(self):
        return self.p.poll() is None

    def cpu(self):
        return cpu_seconds(self.pid)

    def rss(self):
        return rss_bytes(self.pid)

    def stop(self, timeout=20):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def http(method, url, body=None, timeout=600):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Daemon:
    """imei-lockd with its own data directory and free loopback ports."""

    def __init__(self, bins, pin, tmp, name="imei-lockd", peers=(), cache_entries=None, extra=""):
        self.bins, self.pin, self.tmp, self.name = bins, pin, tmp, name
        os.makedirs(tmp, exist_ok=True)
        self.ports = {k: free_port() for k in ("api", "metrics", "auth", "acct", "diameter")}
        self.data = os.path.join(tmp, "data")
        self.config = os.path.join(tmp, "imei-lockd.toml")
        peer_tables = "".join(f'[[diameter.peers]]\norigin_host = "{h}"\n' for h in peers)
        cache = "" if cache_entries is None else f"sim_cache_entries = {cache_entries}\n"
        with open(self.config, "w") as f:
            f.write(
                f"""[node]
data_dir = "{self.data}"
{cache}[log]
level = "warn"
[radius]
auth_listen = "127.0.0.1:{self.ports['auth']}"
acct_listen = "127.0.0.1:{self.ports['acct']}"
[[radius.clients]]
name = "load"
address = "127.0.0.1/32"
secret = "{SECRET}"
require_message_authenticator = true
[diameter]
listen = ["tcp://127.0.0.1:{self.ports['diameter']}"]
origin_host = "aaa.localdomain"
origin_realm = "localdomain"
{peer_tables}[api]
listen = "127.0.0.1:{self.ports['api']}"
token = "{TOKEN}"
[metrics]
listen = "127.0.0.1:{self.ports['metrics']}"
{extra}"""
            )
        self.proc = None

    def url(self, path):
        return f"http://127.0.0.1:{self.ports['api']}{path}"

    def start(self):
        cmd = self.pin.server([self.bins["imei-lockd"], "--config", self.config])
        self.proc = Proc(self.name, cmd, os.path.join(self.tmp, "daemon.log"))
        deadline = time.time() + 120
        while time.time() < deadline:
            if not self.proc.alive():
                raise SystemExit(f"imei-lockd exited; see {self.tmp}/daemon.log")
            try:
                if http("GET", self.url("/healthz"), timeout=2)[0] == 200:
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise SystemExit("imei-lockd did not answer /healthz")

    def import_sims(self, n, chunk=1_000_000, first=0, stride=1):
        """Bulk import through POST /v1/sims:import, in CSV files of `chunk` rows; every SIM
        locked. Returns seconds from the first POST until the last request is processed."""
        t0 = time.time()
        last = None
        for start in range(first, first + n, chunk):
            rows = range(start, min(first + n, start + chunk))
            body = "imsi,msisdn,profile,imei_management\n" + "".join(
                f"{IMSI_BASE + i * stride:015},,,lock\n" for i in rows
            )
            st, b = http("POST", self.url("/v1/sims:import"), body.encode())
            if st != 202:
                raise SystemExit(f"import: HTTP {st} {b[:200]!r}")
            last = json.loads(b)["request_id"]
        while True:
            st, b = http("GET", self.url(f"/v1/requests/{last}?wait=30"))
            status = json.loads(b)["status"]
            if status == "processed":
                return time.time() - t0
            if status == "failed":
                raise SystemExit(f"import failed: {b[:300]!r}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=10) as r:
            return r.read().decode()

    def metric(self, name):
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc:
            self.proc.stop()


# ---------------------------------------------------------------- load


class Load:
    def __init__(self, bins, pin):
        self.bin, self.pin = bins["imei-lock-load"], pin

    def run(self, args):
        cmd = self.pin.load([self.bin] + [str(a) for a in args] + ["--json"])
        r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise SystemExit(f"imei-lock-load failed ({r.returncode}): {r.stderr.strip()}")
        return json.loads(lines[-1])


def measure(load, server, load_args, rcv=True):
    """One load run with the server's CPU time and the UDP receive-buffer drops around it."""
    snmp0 = udp_snmp()
    c0 = server.cpu()
    g0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = load.run(load_args)
    g1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c1 = server.cpu()
    snmp1 = udp_snmp()
    res["server_cpu_s"] = round(c1 - c0, 3)
    # Busy share of the server's CPU: near 1.0 means the server was the bottleneck, well below
    # means the load generator (or the network stack) was.
    res["server_cpu_util"] = round((c1 - c0) / max(res["duration_s"], 1e-9), 3)
    res["load_cpu_s"] = round(g1.ru_utime + g1.ru_stime - g0.ru_utime - g0.ru_stime, 3)
    ans = max(res["answered"], 1)
    res["server_cpu_s_per_100k"] = round((c1 - c0) / ans * 100_000, 3)
    res["answers_per_server_cpu_s"] = round(ans / max(c1 - c0, 1e-9), 1)
    if rcv:
        res["rcvbuf_errors"] = snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0)
        res["udp_in_errors"] = snmp1.get("InErrors", 0) - snmp0.get("InErrors", 0)
    return res


def peak_and_half(load, server, base_args, seconds, half_seconds, half_extra=()):
    """Closed loop (peak), then open loop at 50 % of that peak (latency), with `half_extra`
    added to the generator's arguments for the latter."""
    peak = measure(load, server, base_args + ["--duration", seconds])
    rate = max(int(peak["answers_per_s"] * 0.5), 1)
    half = measure(load, server, base_args + ["--duration", half_seconds, "--rate", rate]
                   + list(half_extra))
    return {"peak": peak, "half": half, "half_rate": rate}


def wait_answering(load, args, what, tries=100):
    for _ in range(tries):
        try:
            r = load.run(args + ["--duration", "0.2", "--timeout-ms", "200"])
            if r["answered"] > 0:
                return
        except SystemExit:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} never answered")


# ---------------------------------------------------------------- output


def fmt_int(x):
    return f"{x:,.0f}".replace(",", " ")


def write_results(out, kind, doc, table_lines):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{kind}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    svg = os.path.join(out, f"{kind}.svg")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "chart.py"), path, svg], check=True)
    with open(os.path.join(out, f"{kind}.md"), "w") as f:
        f.write("\n".join(table_lines) + "\n")
    print("\n".join(table_lines))
    print(f"\nresults: {path}, {svg}")


def ratio(a, b):
    return round(a / b, 3) if b else None


# ---------------------------------------------------------------- radius


def freeradius_conf(tmp, port, sims, threads):
    conf = os.path.join(tmp, "raddb")
    run = os.path.join(tmp, "run")
    os.makedirs(run, exist_ok=True)
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(ROOT, "bench", "freeradius", "radiusd.conf.in")) as f:
        text = f.read()
    for k, v in {
        "@CONFDIR@": conf,
        "@RUNDIR@": run,
        "@PORT@": str(port),
        "@SECRET@": SECRET,
        "@THREADS@": str(max(threads, 1)),
    }.items():
        text = text.replace(k, v)
    with open(os.path.join(conf, "radiusd.conf"), "w") as f:
        f.write(text)
    open(os.path.join(conf, "dictionary"), "w").close()
    # IMSI -> bound IMEI (TAC+SNR), the same devices the load generator presents.
    with open(os.path.join(conf, "sims"), "w") as f:
        for i in range(sims):
            f.write(f'{IMSI_BASE + i:015}\tTmp-String-0 := "{IMEI_BASE + i:014}"\n')
    return conf


def freeradius_bin():
    for b in ("freeradius", "radiusd"):
        p = shutil.which(b) or (f"/usr/sbin/{b}" if os.path.exists(f"/usr/sbin/{b}") else None)
        if p:
            return p
    return None


def bench_radius(a, bins, pin, out):
    load = Load(bins, pin)
    tmp = tempfile.mkdtemp(prefix="bench-radius-")
    sims = a.sims
    common = ["--sims", sims, "--window", a.window, "--sockets", a.sockets, "--secret", SECRET]
    results = {}
    servers = []

    def run_one(name, proc, port, warm=True):
        target = ["radius", "--target", f"127.0.0.1:{port}"] + common
        wait_answering(load, target, name)
        if warm:
            # One pass over every SIM (imei-lockd binds each to its device here), then the
            # measured runs see every SIM locked and bound.
            load.run(target + ["--count", sims, "--duration", 600])
        r = peak_and_half(load, proc, target, a.seconds, a.seconds)
        r["rss_bytes"] = proc.rss()
        results[name] = r
        log(f"{name}: {fmt_int(r['peak']['answers_per_s'])}/s peak")

    # (1) the ceiling
    port = free_port()
    echo = Proc("echo", pin.server([bins["imei-lock-load"], "echo-radius", "--listen", f"127.0.0.1:{port}"]),
                os.path.join(tmp, "echo.log"))
    try:
        run_one("echo", echo, port, warm=False)
    finally:
        echo.stop()
    servers.append("echo")

    # (2) FreeRADIUS
    fr = freeradius_bin()
    if fr:
        port = free_port()
        conf = freeradius_conf(tmp, port, sims, a.freeradius_threads)
        args = [fr, "-f", "-d", conf, "-l", os.path.join(tmp, "run", "radius.log")]
        if a.freeradius_threads == 0:
            args.append("-t")
        p = Proc("freeradius", pin.server(args), os.path.join(tmp, "freeradius.log"))
        try:
            run_one("freeradius", p, port)
        finally:
            p.stop()
        servers.append("freeradius")
    else:
        log("freeradius not installed: skipped (scripts/setup.sh --test installs it)")

    # (3) imei-lockd on RocksDB, every SIM locked (import) and bound (warm pass)
    d = Daemon(bins, pin, os.path.join(tmp, "imei-lockd"))
    d.start()
    try:
        d.import_sims(sims)
        run_one("imei-lockd", d.proc, d.ports["auth"])
        results["imei-lockd"]["metrics_drops"] = d.metric("imei_lockd_radius_drops_total")
        st, b = http("GET", d.url(f"/v1/sims/{IMSI_BASE + sims // 2:015}"))
        results["imei-lockd"]["sample_sim"] = json.loads(b)
    finally:
        d.stop()
    servers.append("imei-lockd")

    ours = results["imei-lockd"]
    summary = {
        "vs_ceiling_req_s": ratio(ours["peak"]["answers_per_s"], results["echo"]["peak"]["answers_per_s"]),
    }
    if "freeradius" in results:
        frr = results["freeradius"]
        summary["vs_freeradius_req_s"] = ratio(ours["peak"]["answers_per_s"], frr["peak"]["answers_per_s"])
        summary["vs_freeradius_req_per_cpu_s"] = ratio(
            ours["peak"]["answers_per_server_cpu_s"], frr["peak"]["answers_per_server_cpu_s"])
    doc = {
        "bench": "radius",
        "machine": machine(),
        "pinning": pin.describe(),
        "smoke": a.smoke,
        "params": {"sims": sims, "seconds": a.seconds, "window": a.window, "sockets": a.sockets,
                   "freeradius_threads": a.freeradius_threads},
        "servers": servers,
        "results": results,
        "summary": summary,
    }
    lines = radius_table(doc)
    write_results(out, "radius", doc, lines)
    shutil.rmtree(tmp, ignore_errors=True)
    return doc


def server_rows(doc, names):
    rows = []
    for n in names:
        r = doc["results"][n]
        pk, hf = r["peak"], r["half"]
        drops = pk.get("rcvbuf_errors", 0) + hf.get("rcvbuf_errors", 0)
        rows.append(
            f"| {n} | {fmt_int(pk['answers_per_s'])} | {pk['server_cpu_util'] * 100:.0f} % "
            f"| {pk['server_cpu_s_per_100k']:.2f} "
            f"| {fmt_int(pk['answers_per_server_cpu_s'])} | {fmt_int(r['half_rate'])} "
            f"| {hf['latency_us']['p50']:.0f} µs | {hf['latency_us']['p99']:.0f} µs "
            f"| {pk['timeouts'] + hf['timeouts']} | {drops} |"
        )
    return rows


def radius_table(doc):
    m = doc["machine"]
    lines = [
        f"RADIUS Access-Request (3GPP-IMSI, 3GPP-IMEISV, Message-Authenticator), {doc['params']['sims']} SIMs "
        f"locked and bound; {doc['pinning']}; {m['date_utc']}, load average {m['loadavg']}",
        "",
        "| server | req/s (peak) | server CPU busy | server CPU s / 100k | req / server CPU s | 50 % rate | p50 | p99 | timeouts | RcvbufErrors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += server_rows(doc, doc["servers"])
    s = doc["summary"]
    lines.append("")
    if "vs_freeradius_req_s" in s:
        lines.append(f"imei-lockd / FreeRADIUS: {s['vs_freeradius_req_s']:.2f}× req/s, "
                     f"{s['vs_freeradius_req_per_cpu_s']:.2f}× req per server CPU-second (target ≥ 3×)")
    lines.append(f"imei-lockd / echo ceiling: {s['vs_ceiling_req_s'] * 100:.0f} % of its req/s (target ≥ 50 %)")
    return lines


# ---------------------------------------------------------------- diameter


def bench_diameter(a, bins, pin, out):
    load = Load(bins, pin)
    tmp = tempfile.mkdtemp(prefix="bench-diameter-")
    conns = [int(x) for x in a.connections.split(",")]
    hosts = [f"load{i}.localdomain" for i in range(1, max(conns) + 1)]
    results = {}
    servers = []

    def run_one(name, proc, port, s13=False):
        for n in conns if not s13 else [max(conns)]:
            target = ["gx", "--target", f"127.0.0.1:{port}", "--connections", n, "--origin-host",
                      ",".join(hosts[:n]), "--sims", a.sims, "--window", a.window]
            if s13:
                # S13 ECRs (User-Name + Terminal-Information) for the same SIMs and devices.
                target.append("--s13")
                name = "imei-lockd S13"
            wait_answering(load, target, name)
            # One pass over every SIM: binds them (imei-lockd), warms the connections.
            load.run(target + ["--count", a.sims, "--duration", 600])
            # Latency from one generator thread driving every connection: 8 threads on the
            # generator's one CPU would add the scheduler's time slices (milliseconds) to the
            # latencies of every server alike, the echo ceiling's too.
            r = peak_and_half(load, proc, target, a.seconds, a.seconds, ["--threads", 1])
            for k in ("peak", "half"):
                r[k].pop("rcvbuf_errors", None)
                r[k].pop("udp_in_errors", None)
            r["rss_bytes"] = proc.rss()
            key = f"{name} ×{n}"
            results[key] = r
            servers.append(key)
            log(f"{key}: {fmt_int(r['peak']['answers_per_s'])}/s peak")

    port = free_port()
    echo = Proc("echo", pin.server([bins["imei-lock-load"], "echo-diameter", "--listen", f"127.0.0.1:{port}"]),
                os.path.join(tmp, "echo.log"))
    try:
        run_one("echo", echo, port)
    finally:
        echo.stop()

    # S13 served too: after the Gx runs (which bind every SIM), ME-Identity-Check over the
    # widest connection count, same daemon, same SIMs and devices (all WHITELISTED).
    d = Daemon(bins, pin, os.path.join(tmp, "imei-lockd"), peers=hosts,
               extra="[eir.s13]\nenabled = true\n")
    d.start()
    try:
        d.import_sims(a.sims)
        run_one("imei-lockd", d.proc, d.ports["diameter"])
        run_one("imei-lockd", d.proc, d.ports["diameter"], s13=True)
    finally:
        d.stop()

    summary = {}
    for n in conns:
        summary[f"vs_ceiling_x{n}"] = ratio(results[f"imei-lockd ×{n}"]["peak"]["answers_per_s"],
                                            results[f"echo ×{n}"]["peak"]["answers_per_s"])
    wide = max(conns)
    s13_key = f"imei-lockd S13 ×{wide}"
    summary[f"s13_vs_gx_per_cpu_x{wide}"] = ratio(
        results[s13_key]["peak"]["answers_per_server_cpu_s"],
        results[f"imei-lockd ×{wide}"]["peak"]["answers_per_server_cpu_s"])
    doc = {
        "bench": "diameter",
        "machine": machine(),
        "pinning": pin.describe(),
        "smoke": a.smoke,
        "params": {"sims": a.sims, "seconds": a.seconds, "window": a.window, "connections": conns},
        "servers": servers,
        "results": results,
        "summary": summary,
    }
    m = doc["machine"]
    lines = [
        f"Diameter Gx CCR-I (and S13 ECR) over TCP, {a.sims} SIMs locked and bound, window {a.window} per connection; "
        f"{doc['pinning']}; {m['date_utc']}, load average {m['loadavg']}",
        "",
        "| server × connections | CCR/s (peak) | server CPU busy | server CPU s / 100k | CCR / server CPU s | 50 % rate | p50 | p99 | timeouts |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [l.rsplit("|", 2)[0] + "|" for l in server_rows(doc, servers)]
    lines.append("")
    for n in conns:
        peak = results[f"imei-lockd ×{n}"]["peak"]["answers_per_s"]
        target = " (target ≥ 100 000/s)" if n == 8 else ""
        lines.append(f"imei-lockd ×{n}: {fmt_int(peak)} CCR/s{target}, "
                     f"{summary[f'vs_ceiling_x{n}'] * 100:.0f} % of the echo ceiling")
    s13r = results[s13_key]
    lines.append(f"{s13_key}: {fmt_int(s13r['peak']['answers_per_s'])} ECR/s, "
                 f"{fmt_int(s13r['peak']['answers_per_server_cpu_s'])} ECR per server CPU-second "
                 f"({summary[f's13_vs_gx_per_cpu_x{wide}']:.2f}× Gx's CCR per server CPU-second), "
                 f"p99 {s13r['half']['latency_us']['p99']:.0f} µs at 50 % of peak (target < 1 ms)")
    write_results(out, "diameter", doc, lines)
    shutil.rmtree(tmp, ignore_errors=True)
    return doc


# ---------------------------------------------------------------- scale


def dir_bytes(path):
    total, sst = 0, 0
    for dp, _, files in os.walk(path):
        for f in files:
            try:
                s = os.path.getsize(os.path.join(dp, f))
            except OSError:
                continue
            total += s
            if f.endswith(".sst"):
                sst += s
    return total, sst


def bench_scale(a, bins, pin, out):
    load = Load(bins, pin)
    sizes = [int(x) for x in a.sizes.split(",")]
    results = []
    for n in sizes:
        tmp = tempfile.mkdtemp(prefix=f"bench-scale-{n}-", dir=a.tmp)
        d = Daemon(bins, pin, tmp)
        d.start()
        r = {"sims": n}
        try:
            secs = d.import_sims(n, chunk=a.chunk)
            r["import_s"] = round(secs, 2)
            r["import_sims_per_s"] = round(n / secs, 1)
            r["rss_after_import_bytes"] = d.proc.rss()
        finally:
            d.stop()
        # Restart: the WAL is flushed into SST files on open; give compaction a moment, stop
        # (flush), and size the directory.
        d.start()
        time.sleep(a.settle)
        d.stop()
        total, sst = dir_bytes(d.data)
        r["disk_bytes"] = total
        r["sst_bytes"] = sst
        r["disk_bytes_per_sim"] = round(total / n, 1)
        r["sst_bytes_per_sim"] = round(sst / n, 1)
        # Decision latency: a pool of `probe` SIMs spread evenly over the whole key space,
        # bound in one pass; the daemon restarted so its SIM cache starts cold; then an open-loop
        # run at a fixed rate, the same for every size.
        probe = min(a.probe, n)
        stride = n // probe
        d.start()
        pool = ["radius", "--target", f"127.0.0.1:{d.ports['auth']}", "--sims", probe,
                "--stride", stride, "--window", 64, "--sockets", 2]
        try:
            wait_answering(load, pool, "imei-lockd")
            load.run(pool + ["--count", probe, "--duration", 600])
        finally:
            d.stop()
        d.start()
        try:
            wait_answering(load, pool, "imei-lockd")
            res = measure(load, d.proc, pool + ["--duration", a.seconds, "--rate", a.rate])
            r["decision"] = res
            r["rss_serving_bytes"] = d.proc.rss()
        finally:
            d.stop()
        results.append(r)
        log(f"{n} SIMs: {fmt_int(r['import_sims_per_s'])} SIMs/s, {r['disk_bytes_per_sim']} B/SIM, "
            f"p99 {r['decision']['latency_us']['p99']:.0f} µs")
        shutil.rmtree(tmp, ignore_errors=True)
    base = results[0]["decision"]["latency_us"]["p99"]
    for r in results:
        r["p99_vs_smallest"] = ratio(r["decision"]["latency_us"]["p99"], base)
    doc = {
        "bench": "scale",
        "machine": machine(),
        "pinning": pin.describe(),
        "smoke": a.smoke,
        "params": {"sizes": sizes, "probe_sims": a.probe, "rate": a.rate, "seconds": a.seconds,
                   "chunk": a.chunk},
        "results": results,
    }
    m = doc["machine"]
    lines = [
        f"Bulk import (POST /v1/sims:import, CSV files of {a.chunk} rows, every SIM locked) and "
        f"decision latency (RADIUS, open loop {a.rate}/s over {a.probe} bound SIMs spread over the "
        f"whole set, SIM cache cold at start); {doc['pinning']}; {m['date_utc']}, load average {m['loadavg']}",
        "",
        "| SIMs | import SIMs/s | disk B/SIM (all files) | SST B/SIM | RSS after import | RSS serving | p50 | p99 | p99 vs smallest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r["decision"]["latency_us"]
        lines.append(
            f"| {fmt_int(r['sims'])} | {fmt_int(r['import_sims_per_s'])} | {r['disk_bytes_per_sim']:.1f} "
            f"| {r['sst_bytes_per_sim']:.1f} | {r['rss_after_import_bytes'] / 2**20:.0f} MiB "
            f"| {r['rss_serving_bytes'] / 2**20:.0f} MiB | {lat['p50']:.0f} µs | {lat['p99']:.0f} µs "
            f"| {r['p99_vs_smallest']:.2f} |"
        )
    write_results(out, "scale", doc, lines)
    return doc


# ---------------------------------------------------------------- main


def bench_profile(a, bins, pin, out):
    """imei-lockd under callgrind (instruction counts: repeatable whatever else the machine
    does): SIMs imported and bound first, counters zeroed, then exactly `--requests` requests of
    `--proto`, then the counts dumped and the costliest functions printed (callgrind_annotate)."""
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (Debian package valgrind)")
    load = Load(bins, pin)
    tmp = tempfile.mkdtemp(prefix="bench-profile-")
    os.makedirs(out, exist_ok=True)
    cg = os.path.join(out, f"callgrind.{a.proto}.out")
    hosts = [f"load{i}.localdomain" for i in range(1, a.profile_connections + 1)]
    d = Daemon(bins, pin, os.path.join(tmp, "imei-lockd"), peers=hosts)
    # No pinning under valgrind: it serialises the threads itself.
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", "--dump-instr=no",
          "--collect-atstart=yes", "--separate-threads=no"]
    d.pin = type("NoPin", (), {"server": staticmethod(lambda cmd: vg + cmd)})()
    d.start()
    try:
        d.import_sims(a.sims)
        if a.proto == "radius":
            target = ["radius", "--target", f"127.0.0.1:{d.ports['auth']}", "--sims", a.sims,
                      "--window", a.window, "--sockets", a.sockets, "--secret", SECRET]
        else:
            target = ["gx", "--target", f"127.0.0.1:{d.ports['diameter']}", "--connections",
                      a.profile_connections, "--origin-host", ",".join(hosts), "--sims", a.sims,
                      "--window", a.window]
        target += ["--timeout-ms", 20000]
        load.run(target + ["--count", a.sims, "--duration", 3600])
        subprocess.run(["callgrind_control", "--zero", str(d.proc.pid)], check=True,
                       capture_output=True)
        r = load.run(target + ["--count", a.requests, "--duration", 3600])
        subprocess.run(["callgrind_control", "--dump", str(d.proc.pid)], check=True,
                       capture_output=True)
    finally:
        d.stop()
    answered = r.get("answered", 0)
    dumps = sorted(f for f in os.listdir(out) if f.startswith(f"callgrind.{a.proto}.out"))
    # The dump taken after the measured requests is the one with a part number ".1".
    part = os.path.join(out, next((f for f in dumps if f.endswith(".1")), dumps[-1]))
    ann = subprocess.run(["callgrind_annotate", "--inclusive=no", part],
                         capture_output=True, text=True).stdout
    total = None
    for line in ann.splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
    log(f"{a.proto}: {answered} answers; {total} instructions in the server, "
        f"{(total or 0) / max(answered, 1):.0f} per request ({part})")
    print("\n".join(ann.splitlines()[:60]))
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", choices=["radius", "diameter", "scale", "profile"])
    ap.add_argument("--proto", choices=["radius", "gx"], default="radius", help="profile: what to send")
    ap.add_argument("--requests", type=int, default=20_000, help="profile: requests counted")
    ap.add_argument("--profile-connections", type=int, default=1, help="profile: Gx connections")
    ap.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--sims", type=int)
    ap.add_argument("--window", type=int)
    ap.add_argument("--sockets", type=int, default=2)
    ap.add_argument("--freeradius-threads", type=int, default=0,
                    help="FreeRADIUS worker threads (0 = -t, no threads: its fastest on one CPU)")
    ap.add_argument("--connections", default="1,8")
    ap.add_argument("--sizes", help="scale: SIM counts, comma-separated")
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--probe", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--tmp", default=None, help="scale: where the data directories go")
    a = ap.parse_args()
    smoke = a.smoke
    if a.seconds is None:
        a.seconds = 1.0 if smoke else 10.0
    if a.sims is None:
        a.sims = 200 if smoke else 100_000
    if a.window is None:
        a.window = 16 if smoke else 64
    if a.sizes is None:
        a.sizes = "2000,20000" if smoke else "10000,1000000,10000000"
    if smoke:
        a.probe = min(a.probe, 1000)
        a.rate = min(a.rate, 2000)
        a.settle = min(a.settle, 0.5)
        a.chunk = min(a.chunk, 10_000)
    bin_dir = os.environ.get("BIN_DIR", os.path.join(ROOT, "target", "debug" if smoke else "release"))
    bins = {b: os.path.join(bin_dir, b) for b in ("imei-lockd", "imei-lock-load")}
    for b, p in bins.items():
        if not os.access(p, os.X_OK):
            raise SystemExit(f"{p} not found: build it (cargo build{'' if smoke else ' --release'}) or set BIN_DIR")
    out = os.environ.get("OUT", os.path.join(ROOT, "bench-results", "smoke" if smoke else ""))
    pin = Pinning()
    {"radius": bench_radius, "diameter": bench_diameter, "scale": bench_scale,
     "profile": bench_profile}[a.bench](a, bins, pin, out)


if __name__ == "__main__":
    main()
