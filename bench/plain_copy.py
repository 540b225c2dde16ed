#!/usr/bin/env python3
"""A plain parallel copier: the floor of what two registries sustain.

Copies every tag of the given repositories from one registry to another with
the fewest requests a copier that knows the target is empty can make, and no
checks: it lists each repository's tags, GETs each tag's manifest and, for an
index, each child manifest by digest; streams every distinct blob once
(source GET piped into the target's monolithic upload: POST then PUT) into
the first repository that needs it, and mounts it into every other
repository (POST ?mount=&from=; an upload if the registry declines); then
pushes manifests children first: a child manifest once its blobs are in its
repository, an index (by tag) once its children are. Nothing is HEAD-checked,
retried or verified here: the registry checks digests on PUT, and
bench/verify.py checks the result afterwards.

Everything runs at once under one limit of ``--jobs`` requests in flight
(default 16: regmirror's default of 4 images x 4 blobs at a time).

Usage:
    python3 bench/plain_copy.py --src 127.0.0.1:5000 --dst 127.0.0.1:5001 \\
        --repo bench/repo00 --repo bench/repo01 [--jobs 16]

Plain HTTP only (loopback registries of the benchmark). Prints one JSON line
with what it did; exits 1 with a message naming the request on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections import Counter
from urllib.parse import urljoin

import aiohttp

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
ACCEPT = ", ".join(
    sorted(INDEX_TYPES)
    + ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]
)
MAX_MANIFEST = 4 << 20
CHUNK = 256 << 10


class CopyError(Exception):
    pass


def check(resp: aiohttp.ClientResponse, want: tuple[int, ...], what: str) -> None:
    if resp.status not in want:
        raise CopyError(f"{what}: HTTP {resp.status} (expected {' or '.join(map(str, want))})")


class Copier:
    def __init__(self, session: aiohttp.ClientSession, src: str, dst: str, jobs: int) -> None:
        self.http = session
        self.src = f"http://{src}"
        self.dst = f"http://{dst}"
        self.limit = asyncio.Semaphore(jobs)
        self.counts: Counter = Counter()
        # Per run only: what was pushed where, so each (repository, digest) is done once.
        self.owner: dict[str, str] = {}  # blob digest -> the repository it is uploaded into
        self.blobs: dict[tuple[str, str], asyncio.Task] = {}  # (repository, blob digest) -> upload or mount
        self.children: dict[tuple[str, str], asyncio.Task] = {}  # (repository, manifest digest) -> task

    async def get_manifest(self, repo: str, ref: str) -> tuple[str, bytes]:
        url = f"{self.src}/v2/{repo}/manifests/{ref}"
        async with self.limit, self.http.get(url, headers={"Accept": ACCEPT}) as r:
            self.counts["source manifest GET"] += 1
            check(r, (200,), f"GET {url}")
            body = await r.content.read(MAX_MANIFEST + 1)
            if len(body) > MAX_MANIFEST:
                raise CopyError(f"GET {url}: manifest larger than {MAX_MANIFEST} bytes")
            return r.headers.get("Content-Type", "").split(";")[0].strip(), body

    async def list_tags(self, repo: str) -> list[str]:
        url = f"{self.src}/v2/{repo}/tags/list"
        async with self.limit, self.http.get(url) as r:
            self.counts["source tags GET"] += 1
            check(r, (200,), f"GET {url}")
            if "Link" in r.headers:
                raise CopyError(f"GET {url}: paged tag lists are not supported by this bench copier")
            return list((await r.json()).get("tags") or [])

    async def put_manifest(self, repo: str, ref: str, media_type: str, body: bytes) -> None:
        url = f"{self.dst}/v2/{repo}/manifests/{ref}"
        async with self.limit, self.http.put(url, data=body, headers={"Content-Type": media_type}) as r:
            self.counts["target manifest PUT"] += 1
            check(r, (201,), f"PUT {url}")

    async def upload(self, repo: str, digest: str, size: int, location: str | None = None) -> None:
        """Stream one blob from the source into ``repo`` on the target (monolithic upload)."""
        async with self.limit:
            if location is None:
                url = f"{self.dst}/v2/{repo}/blobs/uploads/"
                async with self.http.post(url, headers={"Content-Length": "0"}) as r:
                    self.counts["target upload POST"] += 1
                    check(r, (202,), f"POST {url}")
                    location = r.headers.get("Location", "")
            put_url = urljoin(self.dst + "/", location)
            put_url += ("&" if "?" in put_url else "?") + f"digest={digest}"
            get_url = f"{self.src}/v2/{repo}/blobs/{digest}"
            async with self.http.get(get_url) as g:
                self.counts["source blob GET"] += 1
                check(g, (200,), f"GET {get_url}")
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
                async with self.http.put(put_url, data=g.content.iter_chunked(CHUNK), headers=headers) as r:
                    self.counts["target upload PUT"] += 1
                    check(r, (201,), f"PUT {put_url.split('?')[0]}?digest={digest}")

    async def mount(self, repo: str, digest: str, size: int, owner: str) -> None:
        url = f"{self.dst}/v2/{repo}/blobs/uploads/?mount={digest}&from={owner}"
        async with self.limit, self.http.post(url, headers={"Content-Length": "0"}) as r:
            self.counts["target mount POST"] += 1
            check(r, (201, 202), f"POST {url}")
            if r.status == 201:
                return
            location = r.headers.get("Location", "")
        self.counts["mount declined"] += 1
        await self.upload(repo, digest, size, location)

    async def mount_after(self, upload: asyncio.Task, repo: str, digest: str, size: int, owner: str) -> None:
        await upload
        await self.mount(repo, digest, size, owner)

    def blob(self, repo: str, digest: str, size: int) -> asyncio.Task:
        """The one task that puts a blob into a repository: an upload the first time, else a mount."""
        key = (repo, digest)
        if key not in self.blobs:
            owner = self.owner.setdefault(digest, repo)
            if owner == repo:
                work = self.upload(repo, digest, size)
            else:
                work = self.mount_after(self.blobs[(owner, digest)], repo, digest, size, owner)
            self.blobs[key] = asyncio.ensure_future(work)
        return self.blobs[key]

    async def _child(self, repo: str, digest: str, media_type: str) -> None:
        mt, body = await self.get_manifest(repo, digest)
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise CopyError(f"GET {self.src}/v2/{repo}/manifests/{digest}: body does not match its digest")
        m = json.loads(body)
        await asyncio.gather(*(self.blob(repo, d["digest"], d["size"]) for d in [m["config"], *m["layers"]]))
        await self.put_manifest(repo, digest, mt or media_type, body)

    def child(self, repo: str, desc: dict) -> asyncio.Task:
        key = (repo, desc["digest"])
        if key not in self.children:
            self.children[key] = asyncio.ensure_future(self._child(repo, desc["digest"], desc["mediaType"]))
        return self.children[key]

    async def tag(self, repo: str, tag: str) -> None:
        media_type, body = await self.get_manifest(repo, tag)
        m = json.loads(body)
        if media_type in INDEX_TYPES or "manifests" in m:
            await asyncio.gather(*(self.child(repo, d) for d in m["manifests"]))
        else:
            await asyncio.gather(*(self.blob(repo, d["digest"], d["size"]) for d in [m["config"], *m["layers"]]))
        await self.put_manifest(repo, tag, media_type, body)
        self.counts["tags copied"] += 1

    async def repository(self, repo: str) -> None:
        await asyncio.gather(*(self.tag(repo, t) for t in await self.list_tags(repo)))


async def run(args: argparse.Namespace) -> dict:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    connector = aiohttp.TCPConnector(limit=2 * args.jobs)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        c = Copier(session, args.src, args.dst, args.jobs)
        start = time.monotonic()
        await asyncio.gather(*(c.repository(r) for r in args.repo))
        return {"seconds": round(time.monotonic() - start, 3), **dict(sorted(c.counts.items()))}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Plain parallel registry-to-registry copier (benchmark floor).")
    p.add_argument("--src", required=True, help="source registry host:port (plain HTTP)")
    p.add_argument("--dst", required=True, help="target registry host:port (plain HTTP)")
    p.add_argument("--repo", action="append", required=True, help="repository to copy, every tag (repeatable)")
    p.add_argument("--jobs", type=int, default=16, help="requests in flight at most")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    try:
        summary = asyncio.run(run(args))
    except (CopyError, aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError) as e:
        print(f"plain_copy: copy from {args.src} to {args.dst} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
