#!/usr/bin/env python3
"""SVG chart of a bench result (bench/bench.py output), stdlib only.

    chart.py RESULT.json OUT.svg

radius / diameter: left, throughput per server (bars, req/s at peak); right, latency distribution
at 50 % of each server's peak (percentile on a log "nines" axis, latency on a log axis).
scale: bars of import SIMs/s and the decision latency distribution per store size.
"""

import json
import math
import sys
from xml.sax.saxutils import escape

W, H = 960, 420
COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]


def nines(p):
    """Percentile → x position on a 'nines' axis: 50 → 0.3, 90 → 1, 99 → 2, 99.9 → 3."""
    p = min(p, 99.999)
    return -math.log10(1 - p / 100)


class Svg:
    def __init__(self):
        self.parts = []

    def add(self, s):
        self.parts.append(s)

    def text(self, x, y, s, size=12, anchor="start", weight="normal"):
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'font-weight="{weight}" font-family="sans-serif">{escape(str(s))}</text>')

    def line(self, x1, y1, x2, y2, color="#999", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                 f'stroke-width="{width}"{d}/>')

    def render(self, title):
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
                f'viewBox="0 0 {W} {H}"><rect width="{W}" height="{H}" fill="white"/>')
        t = f'<text x="{W / 2}" y="22" font-size="15" text-anchor="middle" font-family="sans-serif" font-weight="bold">{escape(title)}</text>'
        return head + t + "".join(self.parts) + "</svg>\n"


def human(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    return f"{v:.0f}"


def bars(svg, x0, y0, w, h, items, title, unit):
    """items: (label, value)."""
    svg.text(x0 + w / 2, y0 - 12, title, 13, "middle", "bold")
    top = max([v for _, v in items] + [1]) * 1.15
    svg.line(x0, y0 + h, x0 + w, y0 + h, "#333")
    n = max(len(items), 1)
    bw = w / n * 0.6
    for i, (label, v) in enumerate(items):
        cx = x0 + (i + 0.5) * w / n
        bh = h * v / top
        svg.add(f'<rect x="{cx - bw / 2:.1f}" y="{y0 + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                f'fill="{COLORS[i % len(COLORS)]}"/>')
        svg.text(cx, y0 + h - bh - 4, f"{human(v)}{unit}", 11, "middle")
        svg.text(cx, y0 + h + 15, label, 11, "middle")


def latency(svg, x0, y0, w, h, series, title):
    """series: (label, [(percentile, µs)])."""
    svg.text(x0 + w / 2, y0 - 12, title, 13, "middle", "bold")
    vals = [v for _, pts in series for _, v in pts if v > 0]
    lo = 10 ** math.floor(math.log10(min(vals))) if vals else 1
    hi = 10 ** math.ceil(math.log10(max(vals))) if vals else 10
    if hi <= lo:
        hi = lo * 10
    xmax = nines(99.99)

    def px(p):
        return x0 + w * nines(p) / xmax

    def py(v):
        v = max(v, lo)
        return y0 + h - h * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    svg.line(x0, y0 + h, x0 + w, y0 + h, "#333")
    svg.line(x0, y0, x0, y0 + h, "#333")
    for p in (50, 90, 99, 99.9, 99.99):
        svg.line(px(p), y0, px(p), y0 + h, "#ddd", dash="3,3")
        svg.text(px(p), y0 + h + 15, f"p{p:g}", 10, "middle")
    d = lo
    while d <= hi:
        svg.line(x0, py(d), x0 + w, py(d), "#eee")
        svg.text(x0 - 4, py(d) + 4, f"{d:g} µs", 10, "end")
        d *= 10
    for i, (label, pts) in enumerate(series):
        pts = [(p, v) for p, v in pts if p >= 10 and p <= 99.99]
        c = COLORS[i % len(COLORS)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(p):.1f},{py(v):.1f}" for j, (p, v) in enumerate(pts))
        svg.add(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        svg.add(f'<rect x="{x0 + 8:.1f}" y="{y0 + 6 + i * 16:.1f}" width="10" height="10" fill="{c}"/>')
        svg.text(x0 + 22, y0 + 15 + i * 16, label, 11)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        doc = json.load(f)
    svg = Svg()
    m = doc.get("machine", {})
    foot = f"{m.get('date_utc', '')}, {m.get('cpus', '?')} CPUs, load average {m.get('loadavg', '')}; {doc.get('pinning', '')}"
    if doc["bench"] in ("radius", "diameter"):
        names = doc["servers"]
        res = doc["results"]
        bars(svg, 60, 70, 360, 280, [(n, res[n]["peak"]["answers_per_s"]) for n in names],
             "throughput at peak (req/s, closed loop)", "")
        latency(svg, 540, 70, 390, 280,
                [(f"{n} @ {human(res[n]['half_rate'])}/s", res[n]["half"]["latency_dist_us"]) for n in names],
                "latency at 50 % of each server's peak (open loop)")
        title = "RADIUS Access-Request" if doc["bench"] == "radius" else "Diameter Gx CCR-I"
    else:
        rs = doc["results"]
        bars(svg, 60, 70, 360, 280, [(human(r["sims"]), r["import_sims_per_s"]) for r in rs],
             "bulk import (SIMs/s)", "")
        latency(svg, 540, 70, 390, 280,
                [(f"{human(r['sims'])} SIMs", r["decision"]["latency_dist_us"]) for r in rs],
                "decision latency by store size (open loop)")
        title = "Store scale"
    svg.text(W / 2, H - 12, foot, 10, "middle")
    with open(dst, "w") as f:
        f.write(svg.render(f"imei-lockd benchmark: {title}"))


if __name__ == "__main__":
    main()
