#!/usr/bin/env bash
# `make image`: builds gitfaas' container image as an OCI image archive
# without Docker or a registry (tests/cluster/images/oci-image.py), the same
# image as the Dockerfile's: /gitfaas (ENTRYPOINT, CMD serve), user
# 65532:65532, TMPDIR=/tmp, port 5000, the Dockerfile's labels, and in place
# of distroless cc the files the binary needs at run time, taken from this
# machine: the shared libraries `ldd` lists (libssl3, libcrypto, libgcc_s,
# libm, libc, the loader) at their paths, the CA certificates, /etc/passwd
# and /etc/group with the nonroot user, its home /home/nonroot (owned by it:
# the default store dir is below it) and /tmp (mode 1777).
#
# Usage: scripts/image.sh [--binary PATH] [--output FILE] [--name NAME]
#   --binary PATH  package this gitfaas binary, its debug info stripped,
#                  instead of building the release one (whose line tables
#                  are kept, compressed, as the Dockerfile does)
#   --output FILE  default: ${CARGO_TARGET_DIR:-target}/image/gitfaas.tar
#   --name NAME    default: gitfaas.local/gitfaas:<version in Cargo.toml>
# Stdout: the archive's path, nothing else (messages go to stderr).
#
# The archive is what `ctr images import`, `crane push FILE REF` and
# `skopeo copy oci-archive:FILE docker://REF` read (see README.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# The layer records each file's mode: the same inputs give the same image.
umask 022
die() { echo "image: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Stdout:/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

binary='' output='' name=''
while [ $# -gt 0 ]; do
  case "$1" in
    --binary | --output | --name)
      [ $# -ge 2 ] || die "$1 needs a value (see --help)"
      case "$1" in
        --binary) binary=$2 ;;
        --output) output=$2 ;;
        --name) name=$2 ;;
      esac
      shift 2
      ;;
    -h | --help) usage >&2; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

for tool in python3 objcopy ldd; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: install it (objcopy: binutils, ldd: libc-bin) and retry"
done
certs=/etc/ssl/certs/ca-certificates.crt
[ -r "$certs" ] || die "$certs not found: install ca-certificates and retry"

version=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [package]"
name=${name:-gitfaas.local/gitfaas:$version}
target=${CARGO_TARGET_DIR:-target}
output=${output:-$target/image/gitfaas.tar}

if [ -z "$binary" ]; then
  echo "image: cargo build --release --locked (zlib linked statically)" >&2
  # As in the Dockerfile: zlib static, so the image needs no libz.
  LIBZ_SYS_STATIC=1 cargo build --release --locked >&2
  binary=$target/release/gitfaas
  # Line tables kept for backtraces, compressed (as the Dockerfile does).
  strip=(--compress-debug-sections=zlib)
else
  if ! [ -f "$binary" ] || ! [ -x "$binary" ]; then
    die "--binary $binary: not an executable file"
  fi
  # A development binary's debug info is most of its size.
  strip=(--strip-debug)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gitfaas-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
r=$work/rootfs
mkdir -p "$r/etc/ssl/certs" "$r/home/nonroot" "$r/tmp"
objcopy "${strip[@]}" "$binary" "$r/gitfaas"
chmod 0755 "$r/gitfaas"

# The libraries the dynamic loader resolves for this binary here, copied
# (their targets, not symlinks) to the paths it found them at, the loader
# included; the vDSO is the kernel's.
libs=$(ldd "$r/gitfaas") || die "ldd $binary failed: is it a dynamically linked x86_64 binary?"
if grep -q 'not found' <<<"$libs"; then
  die "$binary needs libraries this machine lacks: $(grep 'not found' <<<"$libs" | tr -s '\t\n' '  ')"
fi
lib_dirs=()
while read -r lib; do
  install -D -m 0755 "$(readlink -f "$lib")" "$r$lib"
  lib_dirs+=("$r$(dirname "$lib")")
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs" | sort -u)
loader=$(awk '$1 ~ /^\// { print $1 }' <<<"$libs")
[ -n "$loader" ] || die "ldd names no dynamic loader for $binary"

install -m 0644 "$certs" "$r$certs"
# distroless' users; nonroot's numeric id is what the image's USER names.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$r/etc/group"
# Without it glibc asks DNS before /etc/hosts (which the kubelet writes).
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$r/etc/nsswitch.conf"
chmod 0644 "$r/etc/passwd" "$r/etc/group" "$r/etc/nsswitch.conf"
chmod 0700 "$r/home/nonroot"
chmod 1777 "$r/tmp"

# The binary runs with the image's loader and libraries (as the Dockerfile
# runs /gitfaas --version): a library copied wrong fails here, not in a pod.
# Not a chroot, which needs root: a library missing from the image could
# still be found in this machine's default directories.
lib_path=$(printf '%s\n' "${lib_dirs[@]}" | sort -u | paste -sd:)
"$r$loader" --inhibit-cache --library-path "$lib_path" "$r/gitfaas" --version >&2 ||
  die "the packaged binary does not run with the image's libraries"

mkdir -p "$(dirname "$output")"
digest=$(tests/cluster/images/oci-image.py --rootfs "$r" --name "$name" --output "$output" \
  --entrypoint /gitfaas --cmd serve --user 65532:65532 --workdir / --expose 5000/tcp \
  --env SSL_CERT_FILE=$certs --env TMPDIR=/tmp \
  --owner home/nonroot=65532:65532 --compress-level 6 \
  --label org.opencontainers.image.title=gitfaas \
  --label "org.opencontainers.image.description=Push Kubernetes manifests to git; run them with an HTTP call" \
  --label org.opencontainers.image.licenses=Apache-2.0)
output=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")
echo "image: $name ($digest, $(du -h "$output" | cut -f1)) in $output" >&2
echo "$output"
