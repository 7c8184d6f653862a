#!/usr/bin/env python3
"""Writes the compatibility table from the suite's results (target/compat/*.json) into
README.md, between the compat markers. Run by `make test` after the tests; never edit the table
by hand."""
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
reports = [json.loads(p.read_text()) for p in sorted((root / "target/compat").glob("*.json"))]
if not reports:
    sys.exit("compat-table: no results in target/compat (run the tests first)")

# Real servers first, then the emulated stores.
reports.sort(key=lambda r: (bool(r.get("emulated")), r["store"].lower()))
lines = [
    "| store | tested against | version | scenarios passed | what works | checksums | quirks handled |",
    "|---|---|---|---|---|---|---|",
]
for r in reports:
    against = f"emulation from its documentation ([source]({r['source']}))" if r.get("emulated") else "the real server"
    if r.get("skipped"):
        lines.append(f"| {r['store']} | {against} | {r['version']} | — | {r['skipped']} | n/a | — |")
        continue
    passed = [x for x in r["results"] if x["passed"]]
    # An emulated store's "proof" scenarios show what the emulation does to an object without
    # the store's profile: they are the quirks the profile handles.
    works = "; ".join(x["scenario"].split(":")[0] for x in passed if not x.get("proof")) or "—"
    quirks = "; ".join(r["quirks"] + ["without the profile: " + x["detail"] for x in passed if x.get("proof")]) or "none seen"
    checksums = next((x["detail"] for x in r["results"] if x["scenario"].startswith("PutBucketCors with")), "n/a")
    version = "—" if r.get("emulated") else r["version"]
    lines.append(f"| {r['store']} | {against} | {version} | {len(passed)}/{len(r['results'])} | {works} | {checksums} | {quirks} |")
table = "\n".join(lines)

readme = root / "README.md"
text = readme.read_text()
begin, end = "<!-- compat:begin -->", "<!-- compat:end -->"
if begin not in text or end not in text:
    sys.exit("compat-table: README.md has no compat markers")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
print(f"compat-table: {len(reports)} store(s) written to README.md")
