#!/usr/bin/env bash
# Installs standardwebhooks, the Python reference library of the Standard
# Webhooks specification, from PyPI into a virtualenv cached outside the
# repository, keyed by version:
# ${XDG_CACHE_HOME:-$HOME/.cache}/gitfaas/standardwebhooks-<version>. The
# callback signing test (tests/api/callbacks.rs) runs verify.py with its
# python. A cache hit does nothing. All output goes to stderr; stdout prints
# only the virtualenv's bin directory.
#   "$(tests/callbacks/install.sh)/python" tests/callbacks/verify.py …
set -euo pipefail

# Pinned: the test should change only when this line does.
STANDARDWEBHOOKS_VERSION=1.1.0

die() { echo "standardwebhooks install: $*" >&2; exit 1; }
venv=${XDG_CACHE_HOME:-$HOME/.cache}/gitfaas/standardwebhooks-$STANDARDWEBHOOKS_VERSION
stamp="$venv/.complete"
if [ -f "$stamp" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv/bin"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "'python3' not found: install Python >= 3.9 (e.g. apt-get install python3 python3-venv) and retry"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
echo "standardwebhooks install: standardwebhooks $STANDARDWEBHOOKS_VERSION into $venv" >&2
python3 -m venv "$venv" >&2 || die "python3 -m venv failed: install the venv module (e.g. apt-get install python3-venv) and retry"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION" >&2 \
  || die "pip install standardwebhooks==$STANDARDWEBHOOKS_VERSION failed (see above)"
"$venv/bin/python" -c 'import standardwebhooks' >&2 || die "the installed standardwebhooks does not import"
touch "$stamp"
echo "$venv/bin"
