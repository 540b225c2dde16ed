#!/usr/bin/env python3
"""Seed a registry with many tiny tags, for bench/scale.sh (standard library only).

    gen_scale.py seed --registry HOST --repos R --tags-per-repo T [--jobs J]
        Push R repositories bench/r000 .. bench/r(R-1), each with tags
        t00000 .. t(T-1). Every repository holds one config blob and one
        layer blob, shared by all its tags; each tag is its own tiny OCI
        image manifest (about 400 bytes), unique through an annotation.

    gen_scale.py change --registry HOST --repos R --tags-per-repo T --percent P [--jobs J]
        Move P percent of all tags (every (100/P)th tag, counting through
        the repositories in order) to a new manifest: what an upstream does
        when it rebuilds some tags.

    gen_scale.py refs --repos R --tags-per-repo T
        Print "repository tag" lines, one per tag.

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

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TIMEOUT = 60


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.headers, r.read(1 << 20)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read(1 << 20)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repo_name(i: int) -> str:
    return f"bench/r{i:03d}"


def tag_name(i: int) -> str:
    return f"t{i:05d}"


def blobs(repo: str) -> tuple[bytes, bytes]:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "bench": repo},
        sort_keys=True,
    ).encode()
    layer = hashlib.sha256(repo.encode()).digest() * 32  # 1 KiB, one per repository
    return config, layer


def push_blob(host: str, repo: str, data: bytes) -> None:
    digest = sha256(data)
    status, _, _ = request("HEAD", f"http://{host}/v2/{repo}/blobs/{digest}")
    if status == 200:
        return
    status, headers, body = request("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise SystemExit(f"POST upload to {host}/{repo}: HTTP {status} {body[:200]!r}")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    status, _, body = request(
        "PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"}
    )
    if status != 201:
        raise SystemExit(f"PUT blob {digest} to {host}/{repo}: HTTP {status} {body[:200]!r}")


def manifest(repo: str, tag: str, generation: int) -> bytes:
    config, layer = blobs(repo)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}],
            "annotations": {"bench.tag": tag, "bench.generation": str(generation)},
        },
        separators=(",", ":"),
    ).encode()


def put_manifest(host: str, repo: str, tag: str, generation: int) -> None:
    body = manifest(repo, tag, generation)
    status, _, answer = request("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", body, {"Content-Type": OCI_MANIFEST})
    if status != 201:
        raise SystemExit(f"PUT {host}/{repo}:{tag}: HTTP {status} {answer[:200]!r}")


def changed(repos: list[str], tags_per_repo: int, percent: float) -> list[tuple[str, str]]:
    step = max(1, round(100 / percent))
    total = len(repos) * tags_per_repo
    return [(repos[k // tags_per_repo], tag_name(k % tags_per_repo)) for k in range(0, total, step)]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["seed", "change", "refs"])
    p.add_argument("--registry")
    p.add_argument("--repos", type=int, required=True)
    p.add_argument("--tags-per-repo", type=int, required=True)
    p.add_argument("--percent", type=float, default=1.0)
    p.add_argument("--jobs", type=int, default=16)
    a = p.parse_args(argv)
    repos = [repo_name(i) for i in range(a.repos)]
    if a.command == "refs":
        for r in repos:
            for t in range(a.tags_per_repo):
                print(r, tag_name(t))
        return 0
    if not a.registry:
        p.error("--registry is required")
    with ThreadPoolExecutor(a.jobs) as pool:
        if a.command == "seed":
            list(pool.map(lambda r: [push_blob(a.registry, r, b) for b in blobs(r)], repos))
            work = [(r, tag_name(t), 0) for r in repos for t in range(a.tags_per_repo)]
        else:
            work = [(r, t, 1) for r, t in changed(repos, a.tags_per_repo, a.percent)]
        list(pool.map(lambda w: put_manifest(a.registry, *w), work))
    print(f"{a.command}: {len(work)} manifests in {len(repos)} repositories", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
