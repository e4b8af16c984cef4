#!/usr/bin/env bash
# Installs schemathesis (the property-based API tester of `make test`, see
# check.sh) from PyPI into a virtualenv cached outside the repository, keyed
# by version: ${XDG_CACHE_HOME:-$HOME/.cache}/gitfaas/schemathesis-<version>.
# A cache hit does nothing. All output goes to stderr; stdout prints only the
# virtualenv's bin directory.
#   "$(tests/schemathesis/install.sh)/st" --version
set -euo pipefail

# Pinned: a new schemathesis may add checks or change how it generates
# cases, and `make test` should change only when this line does.
SCHEMATHESIS_VERSION=4.32.5

die() { echo "schemathesis install: $*" >&2; exit 1; }
venv=${XDG_CACHE_HOME:-$HOME/.cache}/gitfaas/schemathesis-$SCHEMATHESIS_VERSION
stamp="$venv/.complete"
if [ -f "$stamp" ] && [ -x "$venv/bin/st" ]; then
  echo "$venv/bin"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "'python3' not found: install Python >= 3.10 (e.g. apt-get install python3 python3-venv) and retry"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
start=$(date +%s)
echo "schemathesis install: schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
python3 -m venv "$venv" >&2 || die "python3 -m venv failed: install the venv module (e.g. apt-get install python3-venv) and retry"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2 \
  || die "pip install schemathesis==$SCHEMATHESIS_VERSION failed (see above)"
"$venv/bin/st" --version >&2 || die "the installed $venv/bin/st does not run"
touch "$stamp"
echo "schemathesis install: done in $(( $(date +%s) - start ))s" >&2
echo "$venv/bin"
