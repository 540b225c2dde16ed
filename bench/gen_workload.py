#!/usr/bin/env python3
"""Generate the benchmark workload: multi-arch images as one OCI image layout.

Every repository ``repoNN`` has ``--tags`` tags ``v1``..``vN``; each tag is an
OCI image index with one image per platform (linux/amd64, linux/arm64/v8,
linux/arm/v7; ``--platforms 2`` keeps the first two) plus one buildx-style
attestation manifest per image. Each image has three layers:

* ``base``: one per platform, shared by every repository and tag (``--base-kb``);
* ``deps``: one per repository and platform, shared by its tags (``--deps-kb``);
* ``app``: one per tag and platform (``--app-kb``, varied between 50 % and 150 %).

Layer contents are pseudo-random bytes from seeded generators (incompressible,
so sizes are what they say), packed in a ustar archive and a gzip member with
stored deflate blocks and mtime 0. The output is deterministic for given
arguments.

The layout's ``index.json`` names each index ``repoNN-vM``
(``org.opencontainers.image.ref.name``), so ``skopeo copy
oci:DIR:repo00-v1 ...`` selects one. ``workload.json`` next to it lists the
repositories, tags and sizes for the scripts that drive the benchmark.

An upstream that publishes a release: ``--update-tags K`` generates K more
versions per repository (``v(N+1)``..) that are not part of the initial
state, and ``--alias latest`` names a tag that points at the newest initial
version and, after the update, at the newest update version. The layout holds
every version; ``workload.json`` says which tags make each state
(``tags``/``alias_initial`` and ``update_tags``/``alias_update``) and the
least work a copier can do (``minimum``): for the full copy of the initial
state and for the incremental run after the update, the manifest PUTs (each
distinct manifest once per repository, plus one PUT per extra tag of an
already pushed index), blob uploads (each distinct blob once) and cross-
repository mounts (every other repository that needs it).

Usage:
    python3 bench/gen_workload.py --out bench/out/workload --repos 8 --tags 4
    python3 bench/gen_workload.py --out DIR --tags 4 --update-tags 1 --alias latest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import struct
import sys
import tarfile
import zlib
from pathlib import Path

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_INTOTO = "application/vnd.in-toto+json"
EPOCH = "1970-01-01T00:00:00Z"
ALL_PLATFORMS = [("amd64", None), ("arm64", "v8"), ("arm", "v7")]


def to_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_one_file(name: str, content: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    info.size = len(content)
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    return header + content + b"\0" * (-len(content) % 512) + b"\0" * 1024


def gzip_stored(data: bytes) -> bytes:
    out = bytearray(b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff")
    block = 65535
    n = len(data)
    for start in range(0, max(n, 1), block):
        chunk = data[start : start + block]
        final = 1 if start + block >= n else 0
        out += bytes([final]) + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    out += struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, n & 0xFFFFFFFF)
    return bytes(out)


class Writer:
    def __init__(self, root: Path) -> None:
        self.blob_dir = root / "blobs" / "sha256"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.unique_bytes = 0

    def add(self, media_type: str, data: bytes, **extra) -> dict:
        digest = sha256(data)
        path = self.blob_dir / digest.split(":", 1)[1]
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self.unique_bytes += len(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        desc.update(extra)
        return desc


def layer(w: Writer, seed: str, size: int) -> tuple[dict, str]:
    content = random.Random(seed).randbytes(size)
    tar = tar_one_file(f"opt/bench/{seed}.bin", content)
    return w.add(MT_LAYER, gzip_stored(tar)), sha256(tar)


def image(w: Writer, repo: str, tag: str, arch: str, variant: str | None, layers) -> dict:
    config = {"architecture": arch, "os": "linux"}
    if variant:
        config["variant"] = variant
    config.update(
        {
            "created": EPOCH,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"bench.repo": repo, "bench.tag": tag}},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
            "history": [{"created": EPOCH, "created_by": f"bench layer {i}"} for i in range(len(layers))],
        }
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": w.add(MT_CONFIG, to_json(config)),
        "layers": [desc for desc, _ in layers],
    }
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    return w.add(MT_MANIFEST, to_json(manifest), platform=platform)


def attestation(w: Writer, repo: str, tag: str, image_desc: dict) -> dict:
    statement = to_json(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [
                {"name": f"pkg:docker/bench/{repo}@{tag}", "digest": {"sha256": image_desc["digest"][7:]}}
            ],
            "predicate": {"builder": {"id": "bench/gen_workload.py"}},
        }
    )
    layer_desc = w.add(
        MT_INTOTO, statement, annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
    )
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(statement)]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": w.add(MT_CONFIG, to_json(config)),
        "layers": [layer_desc],
    }
    return w.add(
        MT_MANIFEST,
        to_json(manifest),
        annotations={
            "vnd.docker.reference.digest": image_desc["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
        platform={"architecture": "unknown", "os": "unknown"},
    )


def graph(w: Writer, index_desc: dict) -> tuple[set[str], set[str]]:
    """Digests of the manifests (the index included) and of the blobs an index references."""
    manifests, blobs = {index_desc["digest"]}, set()
    index = json.loads((w.blob_dir / index_desc["digest"].split(":", 1)[1]).read_bytes())
    for child in index["manifests"]:
        manifests.add(child["digest"])
        manifest = json.loads((w.blob_dir / child["digest"].split(":", 1)[1]).read_bytes())
        blobs.add(manifest["config"]["digest"])
        blobs.update(layer_desc["digest"] for layer_desc in manifest["layers"])
    return manifests, blobs


def minimum(repos: list[dict], before: dict, after: dict) -> dict:
    """Least requests that turn a target holding ``before`` into one holding ``after``.

    ``before``/``after`` map a repository to {tag: (index digest, manifests, blobs)}.
    A manifest absent from its repository is one PUT; a tag whose index is
    already in place (an alias, or a tag that moved) is one PUT of that index;
    a blob absent from every repository is one upload, and one mount into each
    other repository that lacks it.
    """
    puts = uploads = mounts = 0
    have_any: set[str] = set().union(*(b for r in before.values() for _, _, b in r.values()))
    new_anywhere: set[str] = set()
    for r in repos:
        name = r["name"]
        old, new = before.get(name, {}), after[name]
        old_m = set().union(*(m for _, m, _ in old.values()))
        old_b = set().union(*(b for _, _, b in old.values()))
        new_m = set().union(*(m for _, m, _ in new.values())) - old_m
        new_b = set().union(*(b for _, _, b in new.values())) - old_b
        puts += len(new_m)
        # Tags that need a PUT of an index pushed anyway (for another tag) or already there.
        pushed_index: set[str] = set()
        for tag, (digest, _, _) in sorted(new.items()):
            if old.get(tag, (None,))[0] == digest:
                continue
            if digest in pushed_index or digest in old_m:
                puts += 1
            pushed_index.add(digest)
        first_time = new_b - have_any - new_anywhere
        uploads += len(first_time)
        mounts += len(new_b) - len(first_time)
        new_anywhere |= first_time
    return {"manifest_puts": puts, "blob_uploads": uploads, "blob_mounts": mounts}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Generate the regmirror benchmark workload (OCI layout).")
    p.add_argument("--out", type=Path, required=True, help="layout directory to (re)write")
    p.add_argument("--repos", type=int, default=8)
    p.add_argument("--tags", type=int, default=4)
    p.add_argument("--platforms", type=int, default=3, choices=[1, 2, 3])
    p.add_argument("--base-kb", type=int, default=2048, help="base layer size, shared by all repositories")
    p.add_argument("--deps-kb", type=int, default=1024, help="deps layer size, shared by a repository's tags")
    p.add_argument("--app-kb", type=int, default=512, help="mean app layer size, one per tag")
    p.add_argument("--update-tags", type=int, default=0, help="versions published by the update, per repository")
    p.add_argument("--alias", default="", help="tag that follows the newest version (e.g. latest); none if empty")
    a = p.parse_args(argv)
    for name in ("repos", "tags", "base_kb", "deps_kb", "app_kb"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.update_tags < 0:
        p.error("--update-tags must be at least 0")
    if a.alias and (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", a.alias) or re.fullmatch(r"v\d+", a.alias)):
        p.error(f"--alias {a.alias!r} is not a tag, or clashes with the version tags v1, v2, ...")

    keys = ("repos", "tags", "platforms", "base_kb", "deps_kb", "app_kb", "update_tags", "alias")
    params = {k: getattr(a, k) for k in keys}
    stamp = a.out / "workload.json"
    if stamp.exists():
        try:
            if json.loads(stamp.read_text())["params"] == params:
                print(f"{a.out}: workload already generated with these parameters")
                return 0
        except (ValueError, KeyError):
            pass
    if a.out.exists():
        # Stale layout with other parameters: start over.
        for dirpath, dirs, names in os.walk(a.out, topdown=False):
            for n in names:
                os.unlink(os.path.join(dirpath, n))
            for d in dirs:
                os.rmdir(os.path.join(dirpath, d))

    w = Writer(a.out)
    platforms = ALL_PLATFORMS[: a.platforms]
    base = {arch: layer(w, f"base-{arch}", a.base_kb * 1024) for arch, _ in platforms}
    refs = []
    repos = []
    before: dict[str, dict] = {}
    after: dict[str, dict] = {}
    pulled_bytes = 0
    for r in range(a.repos):
        repo = f"repo{r:02d}"
        deps = {arch: layer(w, f"deps-{repo}-{arch}", a.deps_kb * 1024) for arch, _ in platforms}
        tags = []
        graphs = {}
        for t in range(1, a.tags + a.update_tags + 1):
            tag = f"v{t}"
            images, atts = [], []
            for arch, variant in platforms:
                rng = random.Random(f"size-{repo}-{tag}-{arch}")
                app_size = int(a.app_kb * 1024 * rng.uniform(0.5, 1.5))
                app = layer(w, f"app-{repo}-{tag}-{arch}", app_size)
                desc = image(w, repo, tag, arch, variant, [base[arch], deps[arch], app])
                images.append(desc)
                atts.append(attestation(w, repo, tag, desc))
                if t <= a.tags:
                    pulled_bytes += base[arch][0]["size"] + deps[arch][0]["size"] + app[0]["size"]
            index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": images + atts}
            desc = w.add(MT_INDEX, to_json(index), annotations={"org.opencontainers.image.ref.name": f"{repo}-{tag}"})
            refs.append(desc)
            tags.append(tag)
            graphs[tag] = (desc["digest"], *graph(w, desc))
        initial, update = tags[: a.tags], tags[a.tags :]
        entry = {"name": f"bench/{repo}", "ref_prefix": f"{repo}-", "tags": initial, "update_tags": update}
        before[entry["name"]] = {t: graphs[t] for t in initial}
        after[entry["name"]] = {t: graphs[t] for t in tags}
        if a.alias:
            entry.update({"alias": a.alias, "alias_initial": initial[-1], "alias_update": tags[-1]})
            before[entry["name"]][a.alias] = graphs[initial[-1]]
            after[entry["name"]][a.alias] = graphs[tags[-1]]
        repos.append(entry)

    (a.out / "oci-layout").write_bytes(to_json({"imageLayoutVersion": "1.0.0"}))
    (a.out / "index.json").write_bytes(to_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": refs}))
    initial_blobs = set().union(*(b for r in before.values() for _, _, b in r.values()))
    summary = {
        "params": params,
        "repositories": repos,
        "images": a.repos * a.tags,
        "update_images": a.repos * a.update_tags,
        "platforms": [f"linux/{arch}" + (f"/{v}" if v else "") for arch, v in platforms],
        "unique_blob_bytes": sum((w.blob_dir / d.split(":", 1)[1]).stat().st_size for d in initial_blobs),
        "layer_bytes_all_tags": pulled_bytes,
        "minimum": {
            "full": minimum(repos, {}, before),
            "incremental": minimum(repos, before, after),
        },
    }
    stamp.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{a.out}: {len(refs)} multi-arch images in {a.repos} repositories, "
        f"{len(platforms)} platforms, {w.unique_bytes / 1048576:.1f} MiB of unique blobs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
