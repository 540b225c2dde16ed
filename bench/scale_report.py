#!/usr/bin/env python3
"""Summarize a bench/scale.sh run into Markdown and JSON.

    scale_report.py --phases TSV --repos R --versions TEXT --machine TEXT --command TEXT
                    --markdown OUT.md --json OUT.json

Each TSV row is one timed phase: tool, layout, size (tags), phase, seconds,
peak RSS (KiB), exit status, then the source log with the line window of the
phase, and the target log with its window. Requests are counted from the
registry logs with bench/report.py's counter.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import count  # noqa: E402  (the request counter of bench/run.sh's report)

PHASES = ["first", "no-op", "no-op-immutable", "change-1%"]


def load(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 13:
                continue
            tool, layout, size, phase, secs, rss, rc, slog, s0, s1, tlog, t0, t1 = p[:13]
            cpu, load = (float(p[13]), float(p[14])) if len(p) >= 15 else (0.0, 0.0)
            src = count(slog, int(s0), int(s1))
            dst = count(tlog, int(t0), int(t1))
            rows.append(
                {
                    "tool": tool,
                    "layout": layout,
                    "tags": int(size),
                    "phase": phase,
                    "seconds": float(secs),
                    "cpu_seconds": cpu,
                    "load": load,
                    "rss_mib": round(int(rss) / 1024, 1),
                    "exit": int(rc),
                    "source": dict(src),
                    "target": dict(dst),
                }
            )
    return rows


def per_tag(row: dict, side: str, key: str) -> float:
    return row[side].get(key, 0) / row["tags"]


def fmt(v: float) -> str:
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def phase_table(rows: list[dict], layout: str) -> list[str]:
    out = [
        "| tool | tags | phase | seconds | CPU s | load | peak RSS MiB | source req/tag | src manifest HEAD/tag | src manifest GET/tag "
        "| src tag lists | target req/tag | dst manifest HEAD/tag | dst manifest PUT/tag | answers >= 400 (src / dst) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(
        (r for r in rows if r["layout"] == layout),
        key=lambda r: (r["tool"], r["tags"], PHASES.index(r["phase"])),
    ):
        out.append(
            f"| {r['tool']} | {r['tags']} | {r['phase']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['load']:.0f} | {r['rss_mib']:.0f} "
            f"| {fmt(per_tag(r, 'source', 'total'))} | {fmt(per_tag(r, 'source', 'manifest HEAD'))} "
            f"| {fmt(per_tag(r, 'source', 'manifest GET'))} | {r['source'].get('tags GET', 0)} "
            f"| {fmt(per_tag(r, 'target', 'total'))} | {fmt(per_tag(r, 'target', 'manifest HEAD'))} "
            f"| {fmt(per_tag(r, 'target', 'manifest PUT'))} "
            f"| {r['source'].get('errors', 0)} / {r['target'].get('errors', 0)} |"
        )
    return out


def growth(rows: list[dict]) -> list[dict]:
    """For each (tool, layout, phase): largest size over smallest, per measure."""
    out = []
    keys = sorted({(r["tool"], r["layout"], r["phase"]) for r in rows})
    for tool, layout, phase in keys:
        rs = sorted((r for r in rows if (r["tool"], r["layout"], r["phase"]) == (tool, layout, phase)), key=lambda r: r["tags"])
        if len(rs) < 2:
            continue
        a, b = rs[0], rs[-1]
        ratio = b["tags"] / a["tags"]
        req_a = (a["source"].get("total", 0) + a["target"].get("total", 0)) or 1
        req_b = b["source"].get("total", 0) + b["target"].get("total", 0)
        out.append(
            {
                "tool": tool,
                "layout": layout,
                "phase": phase,
                "from_tags": a["tags"],
                "to_tags": b["tags"],
                "tags_ratio": ratio,
                "requests_ratio": round(req_b / req_a, 2),
                "seconds_ratio": round(b["seconds"] / max(a["seconds"], 0.01), 2),
                "cpu_ratio": round(b["cpu_seconds"] / max(a["cpu_seconds"], 0.01), 2),
                "rss_mib": [a["rss_mib"], b["rss_mib"]],
            }
        )
    return out


def goals(rows: list[dict], repos: int) -> list[str]:
    lines = []
    for r in rows:
        if r["tool"] != "regmirror":
            continue
        if r["phase"] == "no-op":
            for side in ("source", "target"):
                c = r[side]
                extra = {k: v for k, v in c.items() if k not in ("total", "manifest HEAD", "tags GET", "ping", "errors")}
                head = c.get("manifest HEAD", 0) / r["tags"]
                ok = head <= 1.0 and not extra
                lines.append(
                    f"- {'met' if ok else 'NOT met'}: {r['layout']} {r['tags']} tags, no-op, {side}: "
                    f"{head:.2f} manifest HEAD per tag, {c.get('tags GET', 0)} tag lists, {c.get('ping', 0)} `/v2/` checks"
                    + (f", other requests {extra}" if extra else ", nothing else")
                )
        if r["phase"] == "no-op-immutable":
            n = 1 if r["layout"] == "one-repo" else repos
            for side in ("source", "target"):
                c = r[side]
                asked = c.get("total", 0) - c.get("ping", 0)
                ok = asked <= 2 * n
                lines.append(
                    f"- {'met' if ok else 'NOT met'}: {r['layout']} {r['tags']} tags, no-op of immutable tags, {side}: "
                    f"{asked} requests besides {c.get('ping', 0)} `/v2/` checks for {n} repositories "
                    f"({c.get('tags GET', 0)} tag lists, {c.get('manifest HEAD', 0)} manifest HEADs; "
                    f"goal: at most one tag listing plus one request per repository)"
                )
        if r["tags"] >= 10000:
            limit = 48 if (r["layout"], r["phase"]) == ("one-repo", "first") else 64
            ok = r["rss_mib"] < limit
            where = f"{repos} repositories" if r["layout"] == "many-repos" else "one repository"
            lines.append(
                f"- {'met' if ok else 'NOT met'}: {r['layout']} ({where}) {r['tags']} tags, {r['phase']}: "
                f"peak RSS {r['rss_mib']:.0f} MiB (goal: under {limit}; the issue sets 48 for a first sync "
                "of 10,000 tags in one repository, 64 for 200 repositories)"
            )
    return lines


def markdown(rows: list[dict], grow: list[dict], meta: dict) -> str:
    out = [
        "# Scale benchmark: many tiny tags",
        "",
        f"Reproduce: `{meta['command']}` (see bench/scale.sh for what each phase does).",
        "",
        f"- Versions: {meta['versions']}",
        f"- Machine: {meta['machine']}",
        f"- Layouts: `one-repo` is one repository holding every tag; `many-repos` is {meta['repos']} repositories "
        "(a config of as many mirrors) sharing the tags evenly.",
        "- Each tag is a tiny OCI manifest; the tags of a repository share one config and one layer.",
        "- Requests are counted in the registries' logs; `req/tag` is the phase's requests on that side divided by the tags mirrored.",
        "",
    ]
    failed = [r for r in rows if r["exit"] != 0]
    if failed:
        out += ["**Failed phases:** " + ", ".join(f"{r['tool']} {r['layout']} {r['tags']} {r['phase']} (exit {r['exit']})" for r in failed), ""]
    for layout in ("one-repo", "many-repos"):
        out += [f"## {layout}", ""] + phase_table(rows, layout) + [""]
    out += [
        "## Growth from the smallest size to the largest",
        "",
        "Linear cost means requests and seconds grow like the tags (ratio equal to the tags ratio); per-tag figures stay flat. "
        "CPU seconds are the tool's own (user + system); wall seconds also carry the machine's load (column `load`).",
        "",
        "| tool | layout | phase | tags | requests ratio | CPU seconds ratio | wall seconds ratio | peak RSS MiB |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for g in grow:
        out.append(
            f"| {g['tool']} | {g['layout']} | {g['phase']} | {g['from_tags']} -> {g['to_tags']} (x{g['tags_ratio']:.0f}) "
            f"| x{g['requests_ratio']} | x{g['cpu_ratio']} | x{g['seconds_ratio']} | {g['rss_mib'][0]:.0f} -> {g['rss_mib'][1]:.0f} |"
        )
    out += ["", "## Goals (regmirror)", ""] + goals(rows, int(meta["repos"])) + [""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--phases", action="append", default=[], help="a scale.sh phases TSV (repeatable)")
    p.add_argument("--merge", action="append", default=[], help="the scale.json of an earlier run whose phases to add")
    p.add_argument("--repos", type=int, required=True)
    p.add_argument("--versions", default="")
    p.add_argument("--machine", default="")
    p.add_argument("--command", default="")
    p.add_argument("--markdown", required=True)
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    rows = [r for path in a.phases for r in load(path)]
    commands = [a.command] if a.command else []
    for path in a.merge:
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f)
        rows += earlier["phases"]
        commands.append(earlier["meta"]["command"])
        a.machine = a.machine or earlier["meta"]["machine"]
        a.versions = a.versions or earlier["meta"]["versions"]
    if not rows:
        raise SystemExit("no phase recorded")
    a.command = "`, run at the same time as `".join(commands) if len(commands) > 1 else a.command
    grow = growth(rows)
    meta = {"versions": a.versions, "machine": a.machine, "command": a.command, "repos": a.repos}
    with open(a.markdown, "w", encoding="utf-8") as f:
        f.write(markdown(rows, grow, meta))
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "phases": rows, "growth": grow}, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
