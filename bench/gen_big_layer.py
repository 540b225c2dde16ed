#!/usr/bin/env python3
"""Write a single-platform OCI image with one big layer, streamed to disk.

The layer is a ustar archive holding one file of ``--mib`` MiB, wrapped in a
gzip member with stored deflate blocks (mtime 0). Its bytes are produced
1 MiB at a time (a seeded random block with the block number written into
it, so no two blocks are equal) while the digest, diff_id and CRC are
computed on the fly: memory stays at a few MiB whatever the size.

Usage: python3 bench/gen_big_layer.py --out bench/out/big-layer --mib 1024
The image is tagged ``big`` (``org.opencontainers.image.ref.name``). Nothing
is written when ``--out`` already holds an image of the requested size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import tarfile
import zlib
from pathlib import Path

MIB = 1 << 20
EPOCH = "1970-01-01T00:00:00Z"


def to_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class GzipStoredWriter:
    """Streams data into a file as a gzip member made of stored deflate blocks."""

    BLOCK = 65535

    def __init__(self, f) -> None:
        self.f = f
        self.digest = hashlib.sha256()  # of the compressed bytes (the blob)
        self.diff_id = hashlib.sha256()  # of the uncompressed bytes (the tar)
        self.crc = 0
        self.size_in = 0
        self.size_out = 0
        self.pending = b""
        self._out(b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x00\xff")

    def _out(self, data: bytes) -> None:
        self.f.write(data)
        self.digest.update(data)
        self.size_out += len(data)

    def _block(self, chunk: bytes, final: bool) -> None:
        self._out(bytes([1 if final else 0]) + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF))
        self._out(chunk)

    def write(self, data: bytes) -> None:
        self.diff_id.update(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size_in += len(data)
        buf = self.pending + data
        # Keep the last (possibly partial) block pending so it can be marked final.
        n_full = (len(buf) - 1) // self.BLOCK if buf else 0
        view = memoryview(buf)
        for i in range(n_full):
            self._block(bytes(view[i * self.BLOCK : (i + 1) * self.BLOCK]), False)
        self.pending = bytes(view[n_full * self.BLOCK :])

    def close(self) -> None:
        self._block(self.pending, True)
        self._out(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size_in & 0xFFFFFFFF))


def write_blob(blob_dir: Path, data: bytes, media_type: str, **extra) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blob_dir / digest).write_bytes(data)
    desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
    desc.update(extra)
    return desc


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Generate an OCI image with one big layer.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mib", type=int, default=1024, help="size of the file in the layer, MiB")
    a = p.parse_args(argv)
    if a.mib < 1:
        p.error("--mib must be at least 1")

    stamp = a.out / "big-layer.json"
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("mib") == a.mib:
                print(f"{a.out}: image with a {a.mib} MiB layer already generated")
                return 0
        except ValueError:
            pass
    blob_dir = a.out / "blobs" / "sha256"
    if blob_dir.exists():
        for name in os.listdir(blob_dir):
            os.unlink(blob_dir / name)
    blob_dir.mkdir(parents=True, exist_ok=True)

    size = a.mib * MIB
    info = tarfile.TarInfo("opt/big.bin")
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    info.size = size
    block = bytearray(random.Random("big-layer").randbytes(MIB))
    tmp = blob_dir / "layer.tmp"
    with open(tmp, "wb") as f:
        gz = GzipStoredWriter(f)
        gz.write(info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict"))
        for i in range(a.mib):
            block[0:8] = struct.pack("<Q", i)
            gz.write(bytes(block))
        gz.write(b"\0" * 1024)  # end of archive (size is a multiple of 512)
        gz.close()
    layer_digest = gz.digest.hexdigest()
    os.replace(tmp, blob_dir / layer_digest)
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": "sha256:" + layer_digest,
        "size": gz.size_out,
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + gz.diff_id.hexdigest()]},
        "history": [{"created": EPOCH, "created_by": f"bench: {a.mib} MiB layer"}],
    }
    config_desc = write_blob(blob_dir, to_json(config), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = write_blob(
        blob_dir,
        to_json(manifest),
        "application/vnd.oci.image.manifest.v1+json",
        annotations={"org.opencontainers.image.ref.name": "big"},
    )
    (a.out / "oci-layout").write_bytes(to_json({"imageLayoutVersion": "1.0.0"}))
    (a.out / "index.json").write_bytes(to_json({"schemaVersion": 2, "manifests": [manifest_desc]}))
    stamp.write_text(json.dumps({"mib": a.mib, "layer": layer, "manifest": manifest_desc["digest"]}) + "\n")
    print(f"{a.out}: image {manifest_desc['digest']} with a {gz.size_out} byte layer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
