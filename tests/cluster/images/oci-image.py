#!/usr/bin/env python3
"""Builds an OCI image archive (an OCI image layout in a tar, with a
`docker save` manifest.json beside it, which `ctr images import`,
`crane push` and `skopeo copy oci-archive:` read) from
a root filesystem directory: one gzip-compressed layer, files owned by root
(or by --owner's uid:gid), timestamps zeroed, entries sorted, so the same
directory gives the same image digest. No registry and no Docker engine are
needed.

  oci-image.py --rootfs DIR --name gitfaas.local/examples:1 --output x.tar \
      [--entrypoint /bin/sh] [--cmd ARG]... [--user 65532:65532] \
      [--env K=V]... [--workdir /] [--label K=V]... [--expose 5000/tcp]... \
      [--owner home/nonroot=65532:65532]... [--compress-level 9]

--owner PATH=UID:GID gives PATH (relative to the rootfs) and everything
below it that owner in the layer: the files in DIR need not be chowned, so
no root is needed to build an image whose user owns its home.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def owner_of(arc, owners):
    """The uid, gid of the longest --owner path that is arc or above it."""
    best = None
    for path, ids in owners:
        if arc == path or arc.startswith(path + "/"):
            if best is None or len(path) > len(best[0]):
                best = (path, ids)
    return best[1] if best else (0, 0)


def parse_owner(spec):
    # The last "=": the path may hold one, the ids do not.
    path, sep, ids = spec.rpartition("=")
    uid, colon, gid = ids.partition(":")
    if not sep or not colon or not uid.isdigit() or not gid.isdigit():
        sys.exit(f"oci-image: --owner {spec!r}: expected PATH=UID:GID")
    return os.path.normpath(path.strip("/")), (int(uid), int(gid))


def layer(rootfs, owners, level):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in [""] + sorted(dirnames + filenames):
                path = os.path.join(dirpath, name) if name else dirpath
                if not name and dirpath == rootfs:
                    continue
                if name in dirnames:
                    continue  # listed when os.walk enters it
                arc = os.path.relpath(path, rootfs)
                info = tar.gettarinfo(path, arcname=arc)
                info.uid, info.gid = owner_of(arc, owners)
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    diff = raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=level) as gz:
        gz.write(diff)
    return diff, packed.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rootfs", required=True)
    p.add_argument("--name", required=True, help="e.g. gitfaas.local/examples:1")
    p.add_argument("--output", required=True)
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--user", default="")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--expose", action="append", default=[], help="e.g. 5000/tcp")
    p.add_argument("--owner", action="append", default=[], help="PATH=UID:GID")
    # 6 packs a 60 MB binary three times faster than 9, 1 % larger.
    p.add_argument("--compress-level", type=int, default=9, choices=range(1, 10))
    a = p.parse_args()
    if not os.path.isdir(a.rootfs):
        sys.exit(f"oci-image: {a.rootfs} is not a directory")
    owners = [parse_owner(o) for o in a.owner]
    for path, _ in owners:
        if not os.path.lexists(os.path.join(a.rootfs, path)):
            sys.exit(f"oci-image: --owner {path}: not in {a.rootfs}")
    diff, blob = layer(a.rootfs, owners, a.compress_level)
    env = ["PATH=/usr/local/bin:/usr/bin:/bin"] + a.env
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": env,
            "Entrypoint": a.entrypoint or None,
            "Cmd": a.cmd or None,
            "User": a.user,
            "WorkingDir": a.workdir,
            "Labels": dict(kv.split("=", 1) for kv in a.label) or None,
            "ExposedPorts": {port: {} for port in a.expose} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(diff)]},
        "history": [{"created_by": "tests/cluster/images/oci-image.py"}],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    config_blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config_blob),
            "size": len(config_blob),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha(blob),
                "size": len(blob),
            }
        ],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
             ("index.json", json.dumps(index, sort_keys=True).encode())]
    for data in (config_blob, manifest_blob, blob):
        files.append(("blobs/sha256/" + sha(data)[7:], data))
    # Beside the OCI layout, the manifest of a `docker save` archive (as
    # `docker save` itself writes since Docker 25): `crane push FILE` reads
    # that one (a file that is not a directory is a docker tarball to it);
    # containerd and skopeo read index.json.
    repo_tag = a.name if tag != "latest" or a.name.endswith(":latest") else a.name + ":latest"
    docker = [{"Config": "blobs/sha256/" + sha(config_blob)[7:],
               "RepoTags": [repo_tag],
               "Layers": ["blobs/sha256/" + sha(blob)[7:]]}]
    files.append(("manifest.json", json.dumps(docker).encode()))
    tmp = a.output + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, a.output)
    print(sha(manifest_blob))


if __name__ == "__main__":
    main()
