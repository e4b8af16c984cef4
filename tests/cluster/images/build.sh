#!/usr/bin/env bash
# Builds the local node's OCI image archives into DIR (no registry, no Docker):
#   gitfaas.local/pause:1     the pod sandbox (pause.c, static)
#   gitfaas.local/examples:1  Debian's busybox-static: sh, wget, gzip, base64,
#                             sed, awk ...; user 65532 (the examples' functions)
# Usage: tests/cluster/images/build.sh DIR   (prints nothing on stdout)
# Push one to a real registry with crane (built beside the node):
#   crane push DIR/examples.tar registry.example.com/gitfaas-examples:1
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh DIR}
die() { echo "images: $*" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || die "'python3' not found: install it and retry"
command -v cc >/dev/null 2>&1 || die "'cc' not found: install gcc and retry"
[ -x /bin/busybox ] || die "/bin/busybox not found: install Debian's busybox-static (scripts/ensure-deps.sh busybox-static)"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/gitfaas-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/pause"
cc -O2 -static -s -o "$work/pause/pause" "$here/pause.c" ||
  die "cannot link pause.c statically: install libc6-dev (glibc's static library)"
"$here/oci-image.py" --rootfs "$work/pause" --name gitfaas.local/pause:1 \
  --output "$out/pause.tar" --entrypoint /pause --user 65535:65535 >/dev/null

r=$work/examples
mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/home/nonroot"
cp /bin/busybox "$r/bin/busybox"
for tool in $(/bin/busybox --list); do
  [ "$tool" = busybox ] || ln -s busybox "$r/bin/$tool"
done
chmod 1777 "$r/tmp"
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh' \
  'nobody:x:65534:65534:nobody:/:/bin/sh' >"$r/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' 'nobody:x:65534:' >"$r/etc/group"
"$here/oci-image.py" --rootfs "$r" --name gitfaas.local/examples:1 --output "$out/examples.tar" \
  --entrypoint /bin/sh --user 65532:65532 --workdir /home/nonroot \
  --label org.opencontainers.image.description="gitfaas examples: busybox-static" >/dev/null
echo "images: built $out/pause.tar and $out/examples.tar" >&2
