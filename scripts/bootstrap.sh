#!/usr/bin/env bash
# Create .venv (Python >= 3.11) if missing and install meshgate with its dev extras.
# Idempotent: `pip install -e '.[EXTRAS]'` runs only when pyproject.toml differs from the
# last successful install, or when that install had fewer extras (the sha256 and the
# extras are kept in .venv/.meshgate-installed).
#
# Env: PYTHON=/path/to/python3.x picks the interpreter for a new venv;
#      MESHGATE_VENV=dir overrides the venv location (default .venv);
#      MESHGATE_EXTRAS=demo installs only what `meshgate demo` needs (make demo),
#      brokers only the brokers meshgate can start by itself;
#      the default, dev, is everything (tests, linters; it includes demo and brokers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${MESHGATE_VENV:-.venv}
EXTRAS=${MESHGATE_EXTRAS:-dev}
case "$EXTRAS" in
    dev|demo|brokers) ;;
    *) echo "bootstrap: error: MESHGATE_EXTRAS must be dev, demo or brokers, not $EXTRAS" >&2; exit 1 ;;
esac
STAMP="$VENV/.meshgate-installed"
MIN_MAJOR=3
MIN_MINOR=11

die() { echo "bootstrap: error: $*" >&2; exit 1; }

version_ok() {  # version_ok PYTHON -> 0 if it is at least 3.11
    "$1" -c "import sys; sys.exit(sys.version_info < ($MIN_MAJOR, $MIN_MINOR))" 2>/dev/null
}

# One bootstrap at a time (make test may run in parallel in the same tree).
mkdir -p .meshgate
exec 9>.meshgate/bootstrap.lock
if command -v flock >/dev/null 2>&1; then flock 9; fi

if [[ -x "$VENV/bin/python" ]] && ! version_ok "$VENV/bin/python"; then
    die "$VENV uses $("$VENV/bin/python" -V 2>&1), meshgate needs Python >= $MIN_MAJOR.$MIN_MINOR: remove $VENV and run again (set PYTHON=... to pick the interpreter)"
fi

# A venv without pip (e.g. left by a `python -m venv` that failed at ensurepip) is
# rebuilt; the stamp goes with it.
if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "bootstrap: $VENV has no pip, rebuilding it"
    rm -rf "$VENV"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    python=""
    if [[ -n ${PYTHON:-} ]] && ! version_ok "$PYTHON"; then
        die "PYTHON=$PYTHON is not a Python >= $MIN_MAJOR.$MIN_MINOR"
    fi
    for candidate in ${PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && version_ok "$candidate"; then
            python=$("$candidate" -c 'import sys; print(sys.executable)')  # past pyenv shims
            break
        fi
    done
    if [[ -z "$python" ]]; then
        found=$(python3 -V 2>&1 || echo "no python3 on PATH")
        die "meshgate needs Python >= $MIN_MAJOR.$MIN_MINOR (found: $found); install it or set PYTHON=/path/to/python3.11"
    fi
    # Debian's python3 ships venv's ensurepip separately (python3.X-venv).
    if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
        pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            echo "bootstrap: installing python$pyver-venv (apt-get)"
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q "python$pyver-venv" >/dev/null \
                || { apt-get update -q >/dev/null && apt-get install -y -q "python$pyver-venv" >/dev/null; } \
                || die "could not install python$pyver-venv"
        else
            die "$python has no venv/ensurepip: apt-get install python$pyver-venv"
        fi
    fi
    echo "bootstrap: creating $VENV with $("$python" -V 2>&1) ($python)"
    rm -f "$STAMP"
    "$python" -m venv "$VENV" || die "python -m venv $VENV failed"
fi

want=$(sha256sum pyproject.toml | cut -d' ' -f1)
read -r have have_extras 2>/dev/null < "$STAMP" || true
have=${have:-}
have_extras=${have_extras:-dev}  # stamps without extras were written by dev installs
# dev includes demo and brokers: a dev install serves `make demo` as is.
if [[ "$want" != "$have" || ( "$have_extras" != "$EXTRAS" && "$have_extras" != dev ) ]]; then
    reason="first install"
    if [[ -n "$have" && "$want" != "$have" ]]; then
        reason="pyproject.toml changed"
    elif [[ -n "$have" ]]; then
        reason="$have_extras installed, $EXTRAS wanted"
    fi
    echo "bootstrap: installing meshgate[$EXTRAS] into $VENV ($reason)"
    start=$SECONDS
    log=.meshgate/pip-install.log
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".[$EXTRAS]" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "pip install -e '.[$EXTRAS]' failed (full output: $log)"
    fi
    echo "$want $EXTRAS" >"$STAMP"
    echo "bootstrap: installed in $((SECONDS - start)) s"
else
    echo "bootstrap: $VENV up to date ($("$VENV/bin/python" -V 2>&1))"
fi
