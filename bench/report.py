#!/usr/bin/env python3
"""Turn the run records of bench/run.sh into Markdown and JSON results.

Input (``--phases``), one line per measured run, tab-separated:
    tool phase repetition seconds max_rss_kib exit_status verdict load1 inner_seconds
    source_log source_from source_to target_log target_from target_to

Requests come from the registries' JSON logs: CNCF distribution 2.8 writes
one line per request whose ``msg`` starts with "response completed"
(``"response completed with error"`` for 4xx/5xx) and carries
``http.request.method``, ``http.request.uri`` and ``http.response.status``.
Only the lines in [from, to) belong to a run. Each request is classified by
method and path (see ``kind``): manifest PUTs, blob uploads (the POST that
opens an upload session, the PATCH and PUT that carry its bytes), mounts
(POST ?mount=: 201 mounted, 202 declined and turned into an upload session),
HEADs and GETs of manifests and blobs, tag lists.

Wall time, peak RSS and every count are given as the median over the
repetitions whose run succeeded and left a verified target (min-max when they
differ). Ratios to the plain copier are taken per repetition (both measured
back to back on the same machine) and their median reported.

Usage: python3 bench/report.py --phases PHASES_TSV --workload WORKLOAD_JSON \\
    --markdown OUT.md --json OUT.json [--versions TEXT] [--machine TEXT] [--command TEXT]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
from collections import Counter

TOOLS = ["regmirror", "skopeo", "plain"]
PHASES = ["full", "no-op", "incremental"]
TOOL_NAMES = {
    "regmirror": "regmirror sync",
    "skopeo": "skopeo sync --all --preserve-digests",
    "plain": "plain parallel copier (floor)",
}
PHASE_NAMES = {
    "full": "Full copy into an empty target",
    "no-op": "No-op run (nothing changed upstream)",
    "incremental": "Incremental run (a new version in every repository, `latest` moved to it)",
}
TARGET_COLUMNS = [
    ("ping", "`/v2/` checks"),
    ("manifest PUT", "manifest PUT"),
    ("upload POST", "upload sessions (POST)"),
    ("upload PUT", "upload PUT"),
    ("upload PATCH", "upload PATCH"),
    ("mount 201", "mounts"),
    ("mount 202", "mounts declined"),
    ("blob HEAD", "blob HEAD"),
    ("manifest HEAD", "manifest HEAD"),
    ("manifest GET", "manifest GET"),
]
SOURCE_COLUMNS = [
    ("ping", "`/v2/` checks"),
    ("manifest GET", "manifest GET"),
    ("manifest HEAD", "manifest HEAD"),
    ("blob GET", "blob GET"),
    ("blob HEAD", "blob HEAD"),
    ("tags GET", "tag lists"),
]
PATH = re.compile(r"^/v2/(?:(?P<name>.+?)/(?P<res>manifests|blobs/uploads|blobs|tags/list|referrers)(?:/(?P<rest>.*))?)?$")


def kind(method: str, uri: str, status: int) -> str:
    """The class of one request, e.g. "manifest PUT", "mount 201", "upload POST"."""
    path, _, query = uri.partition("?")
    m = PATH.match(path)
    if not m:
        return "other"
    res = m.group("res")
    if res is None:
        return "ping"
    if res == "blobs/uploads":
        if method == "POST" and "mount=" in query:
            return f"mount {status}" if status in (201, 202) else "mount failed"
        return f"upload {method}"
    if res == "blobs":
        return f"blob {method}"
    if res == "manifests":
        return f"manifest {method}"
    if res == "tags/list":
        return f"tags {method}"
    return f"referrers {method}"


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
            if not str(entry.get("msg", "")).startswith("response completed"):
                continue
            method = entry.get("http.request.method")
            if not method:
                continue
            status = int(entry.get("http.response.status", 0))
            c[kind(method, str(entry.get("http.request.uri", "")), status)] += 1
            c["total"] += 1
            if status >= 400:
                c["errors"] += 1
    return c


def spread(values: list[float], digits: int = 0) -> str:
    """Median, with min-max when the values differ."""
    if not values:
        return "-"
    fmt = f"{{:.{digits}f}}"
    med = fmt.format(statistics.median(values))
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return med if lo == hi else f"{med} ({lo}-{hi})"


def load_rows(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            (tool, phase, rep, secs, rss, rc, verdict, load, inner, slog, s0, s1, tlog, t0, t1) = fields
            rows.append(
                {
                    "tool": tool,
                    "phase": phase,
                    "repetition": int(rep),
                    "seconds": float(secs),
                    "peak_rss_mib": round(int(rss) / 1024, 1),
                    "exit": int(rc),
                    "verdict": verdict,
                    "load1_before": float(load),
                    "inner_seconds": None if inner == "-" else float(inner),
                    "source": dict(count(slog, int(s0), int(s1))),
                    "target": dict(count(tlog, int(t0), int(t1))),
                }
            )
    return rows


def summarize(rows: list[dict]) -> dict:
    out: dict = {}
    for tool in TOOLS:
        for phase in PHASES:
            mine = [r for r in rows if r["tool"] == tool and r["phase"] == phase]
            if not mine:
                continue
            good = [r for r in mine if r["verdict"] == "ok"]
            keys = sorted({k for r in good for side in ("source", "target") for k in r[side]})
            s = {
                "runs": len(mine),
                "failed": [f"repetition {r['repetition']}: {r['verdict']}" for r in mine if r["verdict"] != "ok"],
                "seconds": [r["seconds"] for r in good],
                "inner_seconds": [r["inner_seconds"] for r in good if r["inner_seconds"] is not None],
                "peak_rss_mib": [r["peak_rss_mib"] for r in good],
            }
            for side in ("source", "target"):
                s[side] = {k: [r[side].get(k, 0) for r in good] for k in keys if any(k in r[side] for r in good)}
            out.setdefault(tool, {})[phase] = s
    return out


def per_rep_ratios(rows: list[dict], tool: str, base: str, phase: str, base_key: str = "seconds") -> list[float]:
    by = {(r["tool"], r["repetition"]): r for r in rows if r["phase"] == phase and r["verdict"] == "ok"}
    reps = sorted({rep for (t, rep) in by if t == tool} & {rep for (t, rep) in by if t == base})
    return [by[(tool, rep)]["seconds"] / by[(base, rep)][base_key] for rep in reps if by[(base, rep)][base_key]]


def med(values: list) -> float | None:
    return statistics.median(values) if values else None


def request_table(summary: dict, tools: list[str], phase: str, side: str, columns: list, with_errors: bool) -> list:
    """Median request counts of one side (source or target) per tool, one column per request class."""
    head = " | ".join(label for _, label in columns)
    errors_head = " | errors (4xx/5xx)" if with_errors else ""
    out = [f"\nRequests on the **{side}** (median per run):\n", f"| tool | {head} | other | total{errors_head} |"]
    out.append("|---|" + "---:|" * (len(columns) + 2 + with_errors))
    known = {k for k, _ in columns} | {"total", "errors"}
    for t in tools:
        c = summary[t][phase][side]
        cells = [spread(c.get(k, [0])) for k, _ in columns]
        other = [sum(v) for v in zip(*[c[k] for k in c if k not in known])] or [0]
        errors = f" {spread(c.get('errors', [0]))} |" if with_errors else ""
        out.append(f"| {TOOL_NAMES[t]} | {' | '.join(cells)} | {spread(other)} | {spread(c.get('total', [0]))} |{errors}")
    return out


def phase_tables(summary: dict, phase: str) -> list[str]:
    tools = [t for t in TOOLS if phase in summary.get(t, {})]
    if not tools:
        return []
    out = [f"### {PHASE_NAMES[phase]}\n"]
    out.append("| tool | runs ok | wall s | own clock s | peak RSS MiB |")
    out.append("|---|---:|---:|---:|---:|")
    for t in tools:
        s = summary[t][phase]
        out.append(
            f"| {TOOL_NAMES[t]} | {s['runs'] - len(s['failed'])} of {s['runs']} | {spread(s['seconds'], 2)} | "
            f"{spread(s['inner_seconds'], 2)} | {spread(s['peak_rss_mib'], 1)} |"
        )
    out.extend(request_table(summary, tools, phase, "target", TARGET_COLUMNS, with_errors=True))
    out.extend(request_table(summary, tools, phase, "source", SOURCE_COLUMNS, with_errors=False))
    out.append("")
    return out


def checks(summary: dict, workload: dict) -> list[dict]:
    """Each tool's writes on the target against the least possible (workload.json "minimum")."""
    result = []
    for tool in TOOLS:
        for phase in ("full", "incremental"):
            s = summary.get(tool, {}).get(phase)
            if not s or not s["seconds"]:
                continue
            least = workload["minimum"][phase]
            t = s["target"]
            n = len(s["seconds"])
            puts = t.get("manifest PUT", [0] * n)
            result.append(
                {
                    "tool": tool,
                    "phase": phase,
                    "runs": n,
                    "manifest_puts": puts,
                    "least_manifest_puts": least["manifest_puts"],
                    "runs_with_least_manifest_puts": sum(1 for v in puts if v == least["manifest_puts"]),
                    "upload_sessions": t.get("upload POST", [0] * n),
                    "upload_puts": t.get("upload PUT", [0] * n),
                    "upload_patches": t.get("upload PATCH", [0] * n),
                    "least_blob_uploads": least["blob_uploads"],
                    "mounts": t.get("mount 201", [0] * n),
                    "least_mounts": least["blob_mounts"],
                }
            )
    return result


def checks_table(found: list[dict]) -> list[str]:
    out = [
        "\nWrites on the target against the least possible (each distinct manifest once per repository, plus one "
        "PUT per further tag of an index already pushed; each distinct blob uploaded once, and mounted into every "
        "other repository that needs it):\n",
        "| tool | run | manifest PUTs | least | runs at the least | upload sessions | upload PUT | upload PATCH "
        "| least uploads | mounts | least mounts |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in found:
        out.append(
            f"| {TOOL_NAMES[c['tool']]} | {c['phase']} | {spread(c['manifest_puts'])} | {c['least_manifest_puts']} | "
            f"{c['runs_with_least_manifest_puts']} of {c['runs']} | {spread(c['upload_sessions'])} | "
            f"{spread(c['upload_puts'])} | {spread(c['upload_patches'])} | {c['least_blob_uploads']} | "
            f"{spread(c['mounts'])} | {c['least_mounts']} |"
        )
    return out


def markdown(rows: list[dict], summary: dict, workload: dict, meta: dict) -> str:
    p = workload["params"]
    out = ["# regmirror benchmark: full copy, no-op and incremental runs beside skopeo and a plain copier\n"]
    out.append(f"Measured {meta['date']} on {meta['machine']}.  ")
    out.append(f"Versions: {meta['versions']}.  ")
    out.append(f"Reproduce: `{meta['command']}`\n")
    n_tags = p["tags"] + (1 if p.get("alias") else 0)
    out.append(
        f"Workload: {p['repos']} repositories, each with tags v1..v{p['tags']} and `{p.get('alias')}` "
        f"(= v{p['tags']}), {n_tags} tags and {workload['images']} distinct image indexes in all; each index holds "
        f"{len(workload['platforms'])} images ({', '.join(workload['platforms'])}) and one attestation manifest per "
        f"image. Layers: base {p['base_kb']} KiB (shared by every repository), deps {p['deps_kb']} KiB (one per "
        f"repository), app ~{p['app_kb']} KiB (one per tag); {workload['unique_blob_bytes'] / 1048576:.1f} MiB of "
        f"distinct blobs. The update adds v{p['tags'] + 1} to every repository ({workload['update_images']} new "
        f"indexes) and moves `{p.get('alias')}` to it. Every tool mirrors whole repositories (every tag). "
        "Each tool writes to its own fresh target registry; all registries are distribution 2.8 on loopback.\n"
    )
    ratios = per_rep_ratios(rows, "regmirror", "plain", "full")
    inner_ratios = per_rep_ratios(rows, "regmirror", "plain", "full", "inner_seconds")
    sk_ratios = per_rep_ratios(rows, "regmirror", "skopeo", "full")
    out.append("## Summary\n")
    if ratios:
        out.append(
            f"- **Full copy, regmirror / plain copier wall time: {statistics.median(ratios):.2f}x** (median of "
            f"{len(ratios)} per-repetition ratios, each pair measured back to back; range "
            f"{min(ratios):.2f}-{max(ratios):.2f}x). Goal: at most 1.10x."
        )
    if inner_ratios:
        out.append(
            f"- The same against the plain copier's own clock (first request to last answer, without its process "
            f"start-up): {statistics.median(inner_ratios):.2f}x (range "
            f"{min(inner_ratios):.2f}-{max(inner_ratios):.2f}x)."
        )
    if sk_ratios:
        out.append(
            f"- Full copy, regmirror / skopeo wall time: {statistics.median(sk_ratios):.2f}x "
            f"(median of {len(sk_ratios)}, range {min(sk_ratios):.2f}-{max(sk_ratios):.2f}x)."
        )
    found = checks(summary, workload)
    for c in found:
        if c["tool"] != "regmirror":
            continue
        at_least = c["runs_with_least_manifest_puts"]
        verdict = (
            f"the least possible in every run ({c['least_manifest_puts']})"
            if at_least == c["runs"]
            else f"**more than the least possible ({c['least_manifest_puts']}) in {c['runs'] - at_least} of "
            f"{c['runs']} runs**"
        )
        out.append(f"- regmirror {c['phase']}: {spread(c['manifest_puts'])} manifest PUTs, {verdict}.")
    inc = next((c for c in found if c["tool"] == "regmirror" and c["phase"] == "incremental"), None)
    if inc and p.get("alias") and p.get("update_tags") == 1:
        per_repo = inc["least_manifest_puts"] // p["repos"]
        worst = max(inc["manifest_puts"])
        holds = "holds" if worst == inc["least_manifest_puts"] else "does NOT hold"
        out.append(
            f"- A moved alias costs one manifest PUT: {holds}. The incremental least is {per_repo} PUTs per "
            f"repository ({per_repo - 1} manifests of the new version, then 1 for `{p['alias']}`); copying the graph "
            f"again for the alias would make {2 * (per_repo - 1)}. regmirror's worst run made {worst} "
            f"({worst / p['repos']:g} per repository)."
        )
    failed = [r for r in rows if r["verdict"] != "ok"]
    if failed:
        out.append(
            "- **Failed runs** (left out of the medians): "
            + "; ".join(f"{r['tool']} {r['phase']} repetition {r['repetition']}: `{r['verdict']}`" for r in failed)
        )
    loads = [r["load1_before"] for r in rows]
    if loads:
        out.append(
            f"- Noise: the 1-minute load average before each run ranged {min(loads):.2f}-{max(loads):.2f} on "
            f"{meta['cpus']} CPUs (other work shares the machine); ranges in the tables are min-max over the "
            "repetitions."
        )
    plain = [c for c in found if c["tool"] == "plain"]
    if plain:
        c = plain[0]
        exact = all(
            set(c[k]) == {c[least]}
            for k, least in (
                ("manifest_puts", "least_manifest_puts"),
                ("upload_puts", "least_blob_uploads"),
                ("mounts", "least_mounts"),
            )
        )
        out.append(
            "- Cross-check of the least counts (computed from the workload's graph) against the plain copier, which "
            "is built to make exactly those writes: "
            + ("they match in every run." if exact else "**they differ: the least counts or the copier are wrong**.")
        )
    out.extend(checks_table(found))
    out.append("")
    out.append("## Per phase\n")
    for phase in PHASES:
        out.extend(phase_tables(summary, phase))
    out.append("## Every run\n")
    out.append("| tool | phase | rep | wall s | peak RSS MiB | load before | target requests | source requests | result |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        out.append(
            f"| {r['tool']} | {r['phase']} | {r['repetition']} | {r['seconds']:.2f} | {r['peak_rss_mib']:.1f} | "
            f"{r['load1_before']:.2f} | {r['target'].get('total', 0)} | {r['source'].get('total', 0)} | "
            f"{r['verdict'].split(':')[0]} |"
        )
    out.append(
        "\nCounted from the registries' request logs. Upload sessions: POSTs that open an upload (a declined mount "
        "opens one too); upload PUT/PATCH: requests that carry blob bytes; mounts: cross-repository mounts the "
        "registry accepted (201). Errors are 4xx/5xx answers (e.g. a HEAD of a blob not yet there)."
    )
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    a = argparse.ArgumentParser(description="Write the results of bench/run.sh.")
    a.add_argument("--phases", required=True)
    a.add_argument("--workload", required=True)
    a.add_argument("--markdown", required=True)
    a.add_argument("--json", required=True)
    a.add_argument("--versions", default="unknown")
    a.add_argument("--machine", default="unknown")
    a.add_argument("--command", default="bash bench/run.sh")
    args = a.parse_args(argv)
    rows = load_rows(args.phases)
    with open(args.workload, encoding="utf-8") as f:
        workload = json.load(f)
    summary = summarize(rows)
    cpus = re.match(r"\d+", args.machine)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": args.machine,
        "cpus": cpus.group(0) if cpus else "?",
        "versions": args.versions,
        "command": args.command,
    }
    with open(args.markdown, "w", encoding="utf-8") as f:
        f.write(markdown(rows, summary, workload, meta))
    doc = {
        **meta,
        "workload": {k: workload[k] for k in ("params", "images", "update_images", "platforms", "unique_blob_bytes")},
        "minimum": workload["minimum"],
        "ratios": {
            "full_regmirror_over_plain": per_rep_ratios(rows, "regmirror", "plain", "full"),
            "full_regmirror_over_plain_inner": per_rep_ratios(rows, "regmirror", "plain", "full", "inner_seconds"),
            "full_regmirror_over_skopeo": per_rep_ratios(rows, "regmirror", "skopeo", "full"),
        },
        "checks": checks(summary, workload),
        "runs": rows,
    }
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
