#!/usr/bin/env python3
"""Registry helpers for the benchmark, written on the standard library only.

    registry_util.py verify --src HOST --dst HOST --repo REPO [--repo REPO ...]
        Check that the target mirrors the source: every repository has the
        same tags on both sides; every tag's manifest has the same bytes
        (hence digest) on both; on the target every child manifest of an
        index is there by digest with the right bytes, and every blob
        (config and layers) answers HEAD in that repository with the size
        the manifest gives. Prints a one-line summary; exits 1 and names
        the first problems otherwise.

    registry_util.py tag --registry HOST --repo REPO --from TAG --to TAG
        Point tag --to at the manifest tag --from points at (GET, then PUT
        of the same bytes): what an upstream does when it moves `latest`.

Plain HTTP only (the benchmark's loopback registries).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
MAX_BODY = 4 << 20
TIMEOUT = 30


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.headers, r.read(MAX_BODY)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read(MAX_BODY)


def get_manifest(host: str, repo: str, ref: str) -> tuple[int, str, bytes]:
    status, headers, body = request("GET", f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    return status, (headers.get("Content-Type") or "").split(";")[0].strip(), body


def list_tags(host: str, repo: str) -> list[str] | None:
    status, _, body = request("GET", f"http://{host}/v2/{repo}/tags/list")
    if status == 404:
        return []
    if status != 200:
        return None
    return sorted(json.loads(body).get("tags") or [])


def sha256(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def verify(src: str, dst: str, repos: list[str]) -> int:
    problems: list[str] = []
    tags_checked = 0
    manifests: set[tuple[str, str]] = set()
    blobs: set[tuple[str, str, int]] = set()

    def one_tag(repo: str, tag: str) -> list[tuple[str, str]]:
        s_status, _, s_body = get_manifest(src, repo, tag)
        d_status, _, d_body = get_manifest(dst, repo, tag)
        if s_status != 200:
            problems.append(f"{src}/{repo}:{tag}: source answers {s_status}")
            return []
        if d_status != 200:
            problems.append(f"{dst}/{repo}:{tag}: target answers {d_status}")
            return []
        if sha256(s_body) != sha256(d_body):
            problems.append(f"{dst}/{repo}:{tag} is {sha256(d_body)}, the source has {sha256(s_body)}")
            return []
        m = json.loads(d_body)
        if "manifests" in m:
            return [(repo, d["digest"]) for d in m["manifests"]]
        blobs.update((repo, d["digest"], d["size"]) for d in [m["config"], *m.get("layers", [])])
        return []

    def one_child(key: tuple[str, str]) -> None:
        repo, digest = key
        status, _, body = get_manifest(dst, repo, digest)
        if status != 200 or sha256(body) != digest:
            problems.append(f"{dst}/{repo}@{digest}: child manifest missing or different (HTTP {status})")
            return
        m = json.loads(body)
        blobs.update((repo, d["digest"], d["size"]) for d in [m["config"], *m.get("layers", [])])

    def one_blob(key: tuple[str, str, int]) -> None:
        repo, digest, size = key
        status, headers, _ = request("HEAD", f"http://{dst}/v2/{repo}/blobs/{digest}")
        length = headers.get("Content-Length") if headers else None
        if status != 200 or length != str(size):
            problems.append(f"{dst}/{repo} blob {digest}: HEAD answers {status}, length {length}, expected {size}")

    with ThreadPoolExecutor(8) as pool:
        work = []
        for repo in repos:
            s_tags, d_tags = list_tags(src, repo), list_tags(dst, repo)
            if s_tags is None or d_tags is None or not s_tags:
                problems.append(f"{repo}: cannot list tags (source {s_tags}, target {d_tags})")
                continue
            if s_tags != d_tags:
                problems.append(f"{repo}: target tags {d_tags}, source tags {s_tags}")
            work += [(repo, t) for t in s_tags]
        for children in pool.map(lambda rt: one_tag(*rt), work):
            manifests.update(children)
        tags_checked = len(work)
        list(pool.map(one_child, sorted(manifests)))
        list(pool.map(one_blob, sorted(blobs)))
    if problems:
        print(f"verify {dst} against {src}: {len(problems)} problems; the first ones:", file=sys.stderr)
        for p in problems[:5]:
            print(f"    {p}", file=sys.stderr)
        return 1
    print(
        f"verify {dst}: {tags_checked} tags identical to {src}, {len(manifests)} child manifests "
        f"and {len(blobs)} blobs in place"
    )
    return 0


def tag(registry: str, repo: str, src_tag: str, dst_tag: str) -> int:
    status, media_type, body = get_manifest(registry, repo, src_tag)
    if status != 200:
        print(f"tag: GET {registry}/{repo}:{src_tag} answers {status}", file=sys.stderr)
        return 1
    url = f"http://{registry}/v2/{repo}/manifests/{dst_tag}"
    status, _, answer = request("PUT", url, body, {"Content-Type": media_type})
    if status != 201:
        print(f"tag: PUT {url} answers {status}: {answer[:200]!r}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check that a target mirrors a source")
    v.add_argument("--src", required=True)
    v.add_argument("--dst", required=True)
    v.add_argument("--repo", action="append", required=True)
    t = sub.add_parser("tag", help="point a tag at another tag's manifest")
    t.add_argument("--registry", required=True)
    t.add_argument("--repo", required=True)
    t.add_argument("--from", dest="src_tag", required=True)
    t.add_argument("--to", dest="dst_tag", required=True)
    a = p.parse_args(argv)
    try:
        if a.cmd == "verify":
            return verify(a.src, a.dst, a.repo)
        return tag(a.registry, a.repo, a.src_tag, a.dst_tag)
    except (OSError, ValueError, KeyError) as e:
        print(f"registry_util {a.cmd}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
