#!/usr/bin/env bash
# Installs what building and testing gitfaas needs beyond Rust and Go, when it
# is missing: pkg-config and OpenSSL headers (git2's https transport) and
# openssl + curl (the control plane's PKI and readiness checks). Tools only
# some targets need are named as arguments: redis-server (the store's Redis
# tests), shellcheck (`make lint`), runc and busybox-static (the real node
# of the local cluster and its examples image), npm (node and npm: the web
# console's build, build.rs) and chromium (Debian's, /usr/bin/chromium: the
# console's browser test). Uses apt-get as root; otherwise says what to
# install.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
# git: `git daemon` is the remote of the fetch tests and of the benchmark.
command -v git >/dev/null 2>&1 || missing+=(git)
for pkg in "$@"; do
  case "$pkg" in
    redis-server) command -v redis-server >/dev/null 2>&1 || missing+=(redis-server) ;;
    shellcheck) command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck) ;;
    runc) command -v runc >/dev/null 2>&1 || missing+=(runc) ;;
    npm) command -v npm >/dev/null 2>&1 || missing+=(nodejs npm) ;;
    chromium) [ -x /usr/bin/chromium ] || missing+=(chromium) ;;
    busybox-static) [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx wget || missing+=(busybox-static) ;;
    *) missing+=("$pkg") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
else
  echo "deps: missing ${missing[*]}: install them with your package manager (e.g. sudo apt-get install ${missing[*]}) and retry" >&2
  exit 1
fi
