#!/usr/bin/python3
"""Derive the CoreOS-like image's "next release" from its OCI layout: a z-stream that updated a few
packages, so a few layers change and the rest stay the same blobs (as rpm-ostree's chunking gives
RHCOS: an update of one package changes its layer).

Why: release upgrades on the local cluster (e2e/tests/rollout.rs, the bench's machines section)
need a second release of the 1.3 GiB base that shares most layers with the first, so what a
builder and a machine fetch can be held against what changed.

What changes, in each layer that holds one of PACKAGES (found by its file in the layer, not by
position): the package's copyright file gets one more line, as a rebuilt package's files change;
and the layer with /usr/lib/os-release gets IMAGE_VERSION=<version>. The config's diff_ids and a
label follow; the manifest points at the new blobs; the other blobs are hard links to the base's.
Reproducible (PAX tar of the same members, gzip without timestamps, sorted JSON): the same base
gives the same digest.

Usage: next_release.py --base OCIDIR --out OCIDIR [--version 2]
Prints a JSON summary on stdout (manifest digest, changed layers and their compressed bytes).
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import zlib

PACKAGES = ("openssh-client", "systemd", "libssl3t64", "libc6")
OS_RELEASE = "usr/lib/os-release"


def blob_path(layout, digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))


def read_json(layout, digest):
    with open(blob_path(layout, digest), "rb") as f:
        return json.load(f)


def write_blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blob_path(layout, digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return digest, len(data)


def member_name(member):
    return member.name.removeprefix("./").lstrip("/")


def holds_a_target(path):
    """Whether the layer at `path` has a member `edit` changes (streamed: no layer is kept)."""
    targets = {f"usr/share/doc/{pkg}/copyright" for pkg in PACKAGES} | {OS_RELEASE}
    with tarfile.open(path, mode="r|gz") as src:
        return any(member_name(m) in targets for m in src)


def edit(name, data, version):
    """The new content of member `name`, or None to keep it."""
    for pkg in PACKAGES:
        if name == f"usr/share/doc/{pkg}/copyright":
            return data + f"\n(Strata test OS release {version}: {pkg} rebuilt)\n".encode()
    if name == OS_RELEASE:
        return data + f"IMAGE_VERSION={version}\n".encode()
    return None


def rewrite_layer(path, version):
    """The layer at `path` with its edited members, as (uncompressed tar, edited names)."""
    out = io.BytesIO()
    edited = []
    with tarfile.open(path, mode="r:gz") as src, tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT
    ) as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isreg() else None
            name = member_name(member)
            new = edit(name, data, version) if data is not None else None
            if new is not None:
                edited.append(name)
                data = new
                member.size = len(new)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue(), edited


def gzip(data):
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip header, mtime 0, no name
    return z.compress(data) + z.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--version", default="2")
    a = p.parse_args()
    with open(os.path.join(a.base, "index.json")) as f:
        index = json.load(f)
    manifest = read_json(a.base, index["manifests"][0]["digest"])
    config = read_json(a.base, manifest["config"]["digest"])

    blobs = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    for name in os.listdir(os.path.join(a.base, "blobs", "sha256")):
        if not os.path.exists(os.path.join(blobs, name)):
            os.link(os.path.join(a.base, "blobs", "sha256", name), os.path.join(blobs, name))

    changed = []
    for i, layer in enumerate(manifest["layers"]):
        path = blob_path(a.base, layer["digest"])
        if not holds_a_target(path):
            continue
        tar, edited = rewrite_layer(path, a.version)
        digest, size = write_blob(a.out, gzip(tar))
        config["rootfs"]["diff_ids"][i] = "sha256:" + hashlib.sha256(tar).hexdigest()
        manifest["layers"][i] = dict(layer, digest=digest, size=size)
        changed.append({"index": i, "files": edited, "digest": digest, "size": size})
        print(f"next_release: layer {i}: {', '.join(edited)} -> {digest[:19]} ({size} B)", file=sys.stderr)
    found = {f for c in changed for f in c["files"]}
    missing = [f"usr/share/doc/{p}/copyright" for p in PACKAGES if f"usr/share/doc/{p}/copyright" not in found]
    missing += [OS_RELEASE] if OS_RELEASE not in found else []
    if missing:
        sys.exit(f"next_release: not in any layer of {a.base}: {', '.join(missing)}")

    config.setdefault("config", {}).setdefault("Labels", {})["strata.dev/os-release"] = a.version
    dump = lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")).encode()
    cdigest, csize = write_blob(a.out, dump(config))
    manifest["config"] = dict(manifest["config"], digest=cdigest, size=csize)
    mdigest, msize = write_blob(a.out, dump(manifest))
    entry = dict(index["manifests"][0], digest=mdigest, size=msize)
    with open(os.path.join(a.out, "index.json"), "wb") as f:
        f.write(dump(dict(index, manifests=[entry])))
    with open(os.path.join(a.out, "oci-layout"), "wb") as f:
        f.write(dump({"imageLayoutVersion": "1.0.0"}))
    json.dump({"manifest": mdigest, "changed": changed,
               "changed_bytes": sum(c["size"] for c in changed)}, sys.stdout, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
