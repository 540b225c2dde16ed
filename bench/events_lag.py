#!/usr/bin/env python3
"""Push small images into a source registry and time each until its tag is at the target.

Each round pushes a fresh image (a 1 KiB random layer, its config, an OCI
manifest) as tag lag-N of REPO on SRC, then polls HEAD of the same tag on
DST every 10 ms. The source registry's notifications tell `regmirror serve`,
whose mirror has no schedule due: the time measured is push done -> tag at
the target. Prints a JSON list of seconds.
"""

import argparse
import hashlib
import json
import os
import sys
import time
import urllib.request


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def push_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, _ = request("POST", f"http://{host}/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise OSError(f"starting an upload answers {status}")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    status, _, body = request("PUT", f"{location}{sep}digest={digest}", data,
                              {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise OSError(f"finishing an upload answers {status}: {body[:200]!r}")
    return digest


def push_image(host, repo, tag):
    layer = os.urandom(1024)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": push_blob(host, repo, config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": push_blob(host, repo, layer), "size": len(layer)}],
    }).encode()
    status, _, body = request("PUT", f"http://{host}/v2/{repo}/manifests/{tag}", manifest,
                              {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if status != 201:
        raise OSError(f"PUT manifest answers {status}: {body[:200]!r}")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--target-repo", required=True)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    lags = []
    for n in range(a.rounds):
        tag = f"lag-{n}"
        push_image(a.src, a.repo, tag)
        pushed = time.monotonic()
        url = f"http://{a.dst}/v2/{a.target_repo}/manifests/{tag}"
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        while request("HEAD", url, headers=accept)[0] != 200:
            if time.monotonic() - pushed > a.timeout:
                print(f"{tag} not at the target after {a.timeout} s", file=sys.stderr)
                return 1
            time.sleep(0.01)
        lags.append(time.monotonic() - pushed)
        time.sleep(0.5)
    print(json.dumps(lags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
