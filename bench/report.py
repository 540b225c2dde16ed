#!/usr/bin/env python3
"""Turn the phase records of bench/run.sh into a Markdown table.

Input (``phases.tsv``), one line per measured run, tab-separated:
    tool phase seconds max_rss_kib exit_status
    source_log source_from source_to target_log target_from target_to

Request counts come from the registries' JSON logs: CNCF distribution 2.8
writes one line per request whose ``msg`` starts with "response completed"
(``"response completed with error"`` for 4xx/5xx) and carries
``http.request.method``. Only the lines in [from, to) belong to a run.

Usage: python3 bench/report.py PHASES_TSV WORKLOAD_JSON > results.md
"""

from __future__ import annotations

import json
import sys
from collections import Counter

METHODS = ["HEAD", "GET", "PUT", "POST", "PATCH"]


def count(log: str, start: int, end: int) -> Counter:
    c: Counter = Counter()
    with open(log, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            if i < start:
                continue
            if i >= end:
                break
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("msg", "")).startswith("response completed") and "http.request.method" in entry:
                c[entry["http.request.method"]] += 1
                if int(entry.get("http.response.status", 0)) >= 400:
                    c["errors"] += 1
    return c


def fmt_counts(c: Counter) -> str:
    parts = [f"{m} {c[m]}" for m in METHODS if c[m]]
    other = sum(v for k, v in c.items() if k not in METHODS and k != "errors")
    if other:
        parts.append(f"other {other}")
    return ", ".join(parts) or "none"


def total(c: Counter) -> int:
    return sum(v for k, v in c.items() if k != "errors")


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a" if a == 0 else "inf"
    return f"{a / b:.2f}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = []
    with open(argv[0], encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            tool, phase, secs, rss, rc, slog, sfrom, sto, tlog, tfrom, tto = line.rstrip("\n").split("\t")
            rows.append(
                {
                    "tool": tool,
                    "phase": phase,
                    "secs": float(secs),
                    "rss_mib": int(rss) / 1024,
                    "rc": int(rc),
                    "src": count(slog, int(sfrom), int(sto)),
                    "tgt": count(tlog, int(tfrom), int(tto)),
                }
            )
    with open(argv[1], encoding="utf-8") as f:
        workload = json.load(f)

    out = []
    p = workload["params"]
    out.append("# regmirror vs skopeo: multi-arch mirror benchmark\n")
    out.append(
        f"Workload: {p['repos']} repositories x {p['tags']} tags = {workload['images']} image indexes, "
        f"platforms {', '.join(workload['platforms'])} plus one attestation manifest each; "
        f"layers: base {p['base_kb']} KiB (shared by all), deps {p['deps_kb']} KiB (per repository), "
        f"app ~{p['app_kb']} KiB (per tag); {workload['unique_blob_bytes'] / 1048576:.1f} MiB of unique blobs, "
        f"{workload['layer_bytes_all_tags'] / 1048576:.1f} MiB of layers summed over all tags.\n"
    )
    out.append(
        "`copy`: empty target registry. `no-op`: same target again, nothing changed. "
        "Requests counted from each registry's log (errors = 4xx/5xx answers, e.g. HEAD of a missing blob).\n"
    )
    out.append(
        "| tool | run | exit | wall s | peak RSS MiB | source requests | source total | target requests | target total |"
    )
    out.append("|---|---|---|---:|---:|---|---:|---|---:|")
    for r in rows:
        out.append(
            f"| {r['tool']} | {r['phase']} | {r['rc']} | {r['secs']:.2f} | {r['rss_mib']:.1f} | "
            f"{fmt_counts(r['src'])} | {total(r['src'])} | {fmt_counts(r['tgt'])} "
            f"(errors {r['tgt']['errors']}) | {total(r['tgt'])} |"
        )
    by = {(r["tool"], r["phase"]): r for r in rows}
    phases = [ph for ph in ("copy", "no-op") if ("regmirror", ph) in by and ("skopeo", ph) in by]
    if phases:
        out.append("\nRatios regmirror / skopeo (below 1: regmirror uses less):\n")
        out.append("| run | wall | peak RSS | source requests | source GET | target requests | target writes |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for ph in phases:
            a, b = by[("regmirror", ph)], by[("skopeo", ph)]
            if a["rc"] != 0 or b["rc"] != 0:
                out.append(f"| {ph} | failed run | | | | | |")
                continue
            writes_a = sum(a["tgt"][m] for m in ("PUT", "POST", "PATCH"))
            writes_b = sum(b["tgt"][m] for m in ("PUT", "POST", "PATCH"))
            out.append(
                f"| {ph} | {ratio(a['secs'], b['secs'])} | {ratio(a['rss_mib'], b['rss_mib'])} | "
                f"{ratio(total(a['src']), total(b['src']))} | {ratio(a['src']['GET'], b['src']['GET'])} | "
                f"{ratio(total(a['tgt']), total(b['tgt']))} | {ratio(writes_a, writes_b)} |"
            )
    failed = [f"{r['tool']} {r['phase']} (exit {r['rc']})" for r in rows if r["rc"] != 0]
    if failed:
        out.append(f"\nFailed runs (their figures are not comparable): {', '.join(failed)}.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
