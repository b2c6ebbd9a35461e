#!/usr/bin/python3
"""Write an OS root filesystem as a reproducible OCI image layout, one layer per package chunk.

Why: RHEL CoreOS images are "chunked" by rpm-ostree (ostree-ext): the biggest packages each get a
layer of their own, the rest are packed into a few shared layers, and content no package owns comes
last, so an update of one package changes one layer. This does the same for a Debian tree, reading
the dpkg database: `--layers N` layers in all = (N - groups - 1) single-package layers, `groups`
bin-packed layers of the remaining packages, and one last layer with every directory and every
unowned file (/etc written at build time, the initramfs' siblings, symlinks of the layout).

Reproducible: entries sorted, numeric owners without names, mtimes clamped to the newest mtime a
package shipped (files made at install time get that time; package files keep theirs, so Python's
bytecode stays valid), gzip without timestamps, JSON with sorted keys. Same tree, same digests.

Usage: chunk.py --root DIR --out OCIDIR --built-after EPOCH [--layers 48] [--jobs 2]
                [--label K=V]... [--env K=V]... [--tag latest]
Prints a JSON summary on stdout; writes OCIDIR/../layers.tsv (one line per layer).
"""

import argparse
import datetime
import hashlib
import json
import os
import stat
import sys
import tarfile
import time
import zlib
from multiprocessing import Pool

ADMINDIR = "usr/lib/sysimage/dpkg"
# Directories whose contents never belong in an image (kernel/runtime mounts) — kept empty.
EMPTY_DIRS = {"dev", "proc", "sys", "run", "tmp", "var", "boot", "sysroot"}
# ostree's convention: /boot/<name>-<version> of a kernel package lives in /usr/lib/modules/<version>/<name>.
KERNEL_FILES = ("vmlinuz", "config", "System.map")


def log(msg):
    print(f"chunk: {msg}", file=sys.stderr, flush=True)


class Resolver:
    """Canonical paths inside the root: directory symlinks (/bin -> usr/bin, …) resolved, no escape."""

    def __init__(self, root):
        self.root = root
        self.cache = {"": ""}

    def dir(self, rel, depth=0):
        if rel in self.cache:
            return self.cache[rel]
        if depth > 200:
            raise RuntimeError(f"symlink loop at {rel}")
        parent, _, name = rel.rpartition("/")
        base = self.dir(parent, depth + 1) if parent else ""
        if name in ("", "."):
            out = base
        elif name == "..":
            out = base.rpartition("/")[0]
        else:
            cand = f"{base}/{name}" if base else name
            full = os.path.join(self.root, cand)
            if os.path.islink(full):
                target = os.readlink(full)
                joined = target.lstrip("/") if target.startswith("/") else (f"{base}/{target}" if base else target)
                out = self.dir(joined, depth + 1)
            else:
                out = cand
        self.cache[rel] = out
        return out

    def path(self, rel):
        rel = rel.strip("/")
        parent, _, name = rel.rpartition("/")
        base = self.dir(parent)
        return f"{base}/{name}" if base else name


def read_packages(root):
    info = os.path.join(root, ADMINDIR, "info")
    pkgs = {}
    for f in sorted(os.listdir(info)):
        if f.endswith(".list"):
            with open(os.path.join(info, f), encoding="utf-8", errors="surrogateescape") as fh:
                pkgs[f[: -len(".list")].split(":")[0]] = [l.rstrip("\n") for l in fh if l.strip() not in ("", "/.")]
    if not pkgs:
        raise SystemExit(f"chunk: no dpkg database at {info}")
    return pkgs


def walk(root):
    """Every entry of the tree as (relpath, lstat), directories included, sorted; EMPTY_DIRS kept empty."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        if rel in EMPTY_DIRS:
            if rel in ("var", "boot") and (dirnames or filenames):
                raise SystemExit(f"chunk: /{rel} must be empty, holds {sorted(dirnames + filenames)[:10]}")
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = f"{rel}/{name}" if rel else name
            out.append((p, os.lstat(os.path.join(root, p))))
    out.sort(key=lambda e: e[0].encode("utf-8", "surrogateescape"))
    return out


def plan(root, n_layers, groups):
    pkgs = read_packages(root)
    res = Resolver(root)
    entries = walk(root)
    st_of = dict(entries)
    owner = {}
    for pkg in sorted(pkgs):
        for p in pkgs[pkg]:
            c = res.path(p)
            st = st_of.get(c)
            if st is None:
                m = p.startswith("/boot/") and p[6:].split("-", 1)
                if m and len(m) == 2 and m[0] in KERNEL_FILES:
                    c = f"usr/lib/modules/{m[1]}/{m[0]}"
                    st = st_of.get(c)
            if st is not None and not stat.S_ISDIR(st.st_mode) and c not in owner:
                owner[c] = pkg
    # Unowned files of a kernel's module directory (initramfs.img, depmod's indexes) go with the kernel.
    kernel_pkg = {}
    for p, pkg in owner.items():
        parts = p.split("/")
        if len(parts) > 4 and parts[:3] == ["usr", "lib", "modules"]:
            kernel_pkg.setdefault(parts[3], pkg)
    for p, st in entries:
        parts = p.split("/")
        if not stat.S_ISDIR(st.st_mode) and p not in owner and len(parts) > 4 and parts[:3] == ["usr", "lib", "modules"]:
            if parts[3] in kernel_pkg:
                owner[p] = kernel_pkg[parts[3]]
    # Hard links must stay in one layer: the whole set follows its first owned member.
    links = {}
    for p, st in entries:
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            links.setdefault((st.st_dev, st.st_ino), []).append(p)
    for paths in links.values():
        first = next((owner[p] for p in paths if p in owner), None)
        for p in paths:
            if first is None:
                owner.pop(p, None)
            else:
                owner[p] = first
    # Component sizes (each inode once).
    size, seen = {}, set()
    for p, pkg in owner.items():
        st = st_of[p]
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            size[pkg] = size.get(pkg, 0) + st.st_size
        else:
            size.setdefault(pkg, 0)
    ranked = sorted(size, key=lambda k: (-size[k], k))
    singles = max(0, min(len(ranked), n_layers - groups - 1))
    chunks = [[k] for k in ranked[:singles]]
    bins = [[] for _ in range(groups)]
    totals = [0] * groups
    for k in ranked[singles:]:  # largest first into the lightest bin (LPT): balanced shared layers
        i = min(range(groups), key=lambda j: (totals[j], j))
        bins[i].append(k)
        totals[i] += size[k]
    chunks += [sorted(b) for b in bins if b]
    # Smallest first (vfs storage copies every lower layer into each upper one), unowned last.
    chunks.sort(key=lambda c: (sum(size[k] for k in c), c))
    comp_of = {}
    for i, c in enumerate(chunks):
        for k in c:
            comp_of[k] = i
    layers = [[] for _ in chunks] + [[]]
    dirs = set()
    for p, st in entries:
        if stat.S_ISDIR(st.st_mode):
            dirs.add(p)
            layers[-1].append(p)
        elif p in owner:
            layers[comp_of[owner[p]]].append(p)
        else:
            layers[-1].append(p)
    # Every layer carries the directories above its files (with their real metadata).
    for i in range(len(chunks)):
        need = set(layers[i])
        for p in layers[i]:
            d = p.rpartition("/")[0]
            while d and d not in need:
                need.add(d)
                d = d.rpartition("/")[0]
        layers[i] = sorted(need, key=lambda s: s.encode("utf-8", "surrogateescape"))
    names = [c for c in chunks] + [["(unowned: directories, /etc, layout symlinks)"]]
    total = sum(st.st_size for (dev, ino), st in {(st.st_dev, st.st_ino): st for _, st in entries
                                                   if stat.S_ISREG(st.st_mode)}.items())
    return layers, names, size, len(pkgs), owner, st_of, total


class Sink:
    """File-like: hashes the tar stream (diff_id), gzips it (mtime 0, no name) and hashes the blob."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.z = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.usize = 0
        self.csize = 0

    def write(self, b):
        self.diff.update(b)
        self.usize += len(b)
        self._out(self.z.compress(b))
        return len(b)

    def _out(self, c):
        if c:
            self.blob.update(c)
            self.csize += len(c)
            self.f.write(c)

    def close(self):
        self._out(self.z.flush())
        self.f.close()


def write_layer(args):
    idx, root, paths, clamp, blobdir = args
    tmp = os.path.join(blobdir, f".layer-{idx}.tmp")
    sink = Sink(tmp)
    first_of = {}
    nfiles = 0
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 20) as tar:
        for p in paths:
            full = os.path.join(root, p)
            st = os.lstat(full)
            ti = tarfile.TarInfo(p)
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid = st.st_uid, st.st_gid
            ti.uname = ti.gname = ""
            ti.mtime = min(int(st.st_mtime), clamp)
            fobj = None
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in first_of:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = first_of[key]
                else:
                    first_of[key] = p
                    ti.type = tarfile.REGTYPE
                    ti.size = st.st_size
                    fobj = open(full, "rb")
                nfiles += 1
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
            else:
                continue  # sockets
            if not stat.S_ISLNK(st.st_mode):
                try:  # file capabilities (ping, …) travel as PAX xattrs, as buildah/containers-storage expect
                    cap = os.getxattr(full, "security.capability", follow_symlinks=False)
                    ti.pax_headers["SCHILY.xattr.security.capability"] = cap.decode("utf-8", "surrogateescape")
                except OSError:
                    pass
            tar.addfile(ti, fobj)
            if fobj:
                fobj.close()
    sink.close()
    digest = sink.blob.hexdigest()
    os.replace(tmp, os.path.join(blobdir, digest))
    return {"index": idx, "digest": "sha256:" + digest, "diff_id": "sha256:" + sink.diff.hexdigest(),
            "size": sink.csize, "uncompressed": sink.usize, "entries": len(paths), "files": nfiles}


def put_json(blobdir, obj):
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobdir, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--built-after", type=int, required=True,
                    help="epoch when the tree's build started: files newer than it were made at install time")
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--groups", type=int, default=0, help="shared layers (default: layers/8)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--cmd", default="/bin/bash")
    ap.add_argument("--tag", default="latest")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    groups = a.groups or max(1, round(a.layers / 8))
    t0 = time.time()
    layers, names, size, npkgs, owner, st_of, total = plan(root, a.layers, groups)
    # Clamp: the newest mtime any package shipped (older than the build); install-time files get it.
    shipped = [int(st_of[p].st_mtime) for p in owner if int(st_of[p].st_mtime) < a.built_after]
    clamp = max(shipped) if shipped else 0
    log(f"{npkgs} packages -> {len(layers)} layers ({len(layers) - groups - 1} single-package, {groups} shared, "
        f"1 unowned); mtimes clamped to {clamp}; planned in {time.time() - t0:.1f} s")
    blobdir = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobdir, exist_ok=True)
    t1 = time.time()
    with Pool(a.jobs) as pool:
        results = pool.map(write_layer, [(i, root, paths, clamp, blobdir) for i, paths in enumerate(layers)],
                           chunksize=1)
    results.sort(key=lambda r: r["index"])
    log(f"wrote {len(results)} layers in {time.time() - t1:.1f} s")
    created = datetime.datetime.fromtimestamp(clamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = dict(kv.split("=", 1) for kv in a.label)
    history = []
    for r, comp in zip(results, names):
        shown = ", ".join(comp[:8]) + (f" and {len(comp) - 8} more" if len(comp) > 8 else "")
        history.append({"created": created, "created_by": f"strata os-image chunk {r['index'] + 1}/{len(results)}: {shown}",
                        "comment": f"{len(comp)} components" if len(comp) > 1 or comp[0].startswith("(") else comp[0]})
    config = {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Env": a.env, "Cmd": [a.cmd], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [r["diff_id"] for r in results]},
        "history": history,
    }
    cfg = put_json(blobdir, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": r["digest"], "size": r["size"]}
                   for r in results],
    }
    man = put_json(blobdir, manifest)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
                                                 "annotations": {"org.opencontainers.image.ref.name": a.tag}}]}
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(os.path.dirname(os.path.abspath(a.out)), "layers.tsv"), "w") as f:
        f.write("layer\tuncompressed\tcompressed\tfiles\tcomponents\n")
        for r, comp in zip(results, names):
            f.write(f"{r['index'] + 1}\t{r['uncompressed']}\t{r['size']}\t{r['files']}\t{' '.join(comp)}\n")
    summary = {"manifest": man["digest"], "layers": len(results), "packages": npkgs,
               "uncompressed": sum(r["uncompressed"] for r in results), "compressed": sum(r["size"] for r in results),
               "file_bytes": total, "owned_file_bytes": sum(size.values()), "clamp": clamp}
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
