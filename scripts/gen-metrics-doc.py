#!/usr/bin/env python3
"""Prints the metrics table of docs/reference/metrics.md from src/telemetry/catalogue.rs.

Usage: scripts/gen-metrics-doc.py --write   (replaces the table in docs/reference/metrics.md)
       scripts/gen-metrics-doc.py           (prints it)
The docs test (integration-tests/docs.rs) fails when a family is missing from the page.
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
src = (root / "src/telemetry/catalogue.rs").read_text()
body = src[src.index("pub const FAMILIES"):]
consts = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', src))
units = {"COUNT": "count", "SECONDS": "seconds", "BYTES": "bytes", "None": ""}
rows = ["| metric | type | unit | meaning |", "|---|---|---|---|"]
token = re.compile(
    r"^\s*//\s*(?P<section>[^\n]*)$|family\(\s*(?:\"(?P<name>[^\"]+)\"|(?P<const>[A-Z_]+)),\s*(?P<kind>\w+),\s*"
    r"(?P<unit>\w+),\s*(?P<help>\"(?:[^\"\\]|\\.)*\")\s*,?\s*\)",
    re.M | re.S,
)
for m in token.finditer(body):
    if m.group("section"):
        rows.append(f"| *{m.group('section').rstrip('.')}* | | | |")
        continue
    name = m.group("name") or consts[m.group("const")]
    text = m.group("help")[1:-1]
    text = re.sub(r"\\\n\s*", "", text).replace('\\"', '"')
    rows.append(
        f"| `{name}` | {m.group('kind').lower()} | {units.get(m.group('unit'), '')} | {text} |"
    )
table = "\n".join(rows) + "\n"
if "--write" not in sys.argv:
    sys.stdout.write(table)
    sys.exit(0)
page = root / "docs/reference/metrics.md"
doc = page.read_text()
start = doc.index("| metric | type | unit | meaning |")
end = doc.index("\n\n", start) + 1
page.write_text(doc[:start] + table + doc[end:])
