#!/usr/bin/env bash
# The pytest part of `make test` (the Makefile has bootstrapped .venv and started the
# brokers; it bounds this script with SUITE_TIMEOUT).
#
# Two pytest runs, one after the other:
#   1. tests/unit, tests/integration and tests/deploy on TEST_WORKERS pytest-xdist
#      workers, each test file on one worker (--dist loadfile: a file's tests run in
#      order, in one process, with its module and class fixtures once). Unit tests are
#      pure; integration tests name every topic, queue, stream, subject and client id
#      after a fresh run token (tests/brokers.py unique_name) and wait mostly on
#      brokers; deploy tests check files offline and install into venvs. Two workers
#      roughly halve their wall time on a 2-core machine.
#   2. tests/faults and tests/security in one process, alone: the fault tests time
#      kills, freezes and outages of brokers and gateways, which must not share the CPU
#      with another test; the security tests run their private TLS brokers once, and
#      one of them (test_secrets_in_output: a gateway's exit within 60 s of SIGTERM)
#      failed when run beside the others on xdist under load.
#
# Arguments: extra pytest arguments for both runs (make's PYTEST_ARGS); when one names a
# path (PYTEST_ARGS=tests/faults/test_fault_kill.py), one run of just that, in one
# process. Env: PY (the venv's python), TEST_TIMEOUT (seconds per test), TEST_WORKERS
# (default 2; 0 runs the whole suite in one process, as before).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PY:-.venv/bin/python}
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
TEST_WORKERS=${TEST_WORKERS:-2}
extra=("$@")

common=(-m pytest -q -ra --durations=15 --timeout="$TEST_TIMEOUT")

names_a_path=0
for arg in "${extra[@]}"; do
    if [[ $arg != -* && -e ${arg%%::*} ]]; then names_a_path=1; fi
done

if [[ $TEST_WORKERS == 0 || $names_a_path == 1 ]]; then
    exec "$PY" "${common[@]}" "${extra[@]}"  # as before: timeout's own child
fi

# The clean-venv tests of both runs install from one wheelhouse (tests/wheelhouse.py).
MESHGATE_TEST_WHEELHOUSE=$(mktemp -d "${TMPDIR:-/tmp}/meshgate-wheelhouse-XXXXXX")
export MESHGATE_TEST_WHEELHOUSE
trap 'rm -rf "$MESHGATE_TEST_WHEELHOUSE"' EXIT

# pytest exits 5 when it collected nothing (e.g. a -k that selects only one part).
status() { if [[ $1 == 5 ]]; then echo 0; else echo "$1"; fi; }

# SUITE_TIMEOUT's SIGTERM (and Ctrl-C) reach this shell, not pytest: pass them on, so
# that a hung suite still ends (one pytest process was timeout's child before).
child=""
stopping=""
pass_on() { stopping=1; if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; fi; }
trap pass_on TERM INT
run_pytest() {  # run_pytest ARGS...: pytest in the background, its exit status waited for
    "$PY" "$@" &
    child=$!
    local code=0
    wait "$child" || code=$?
    while kill -0 "$child" 2>/dev/null; do  # a signal ended the wait, not pytest
        code=0
        wait "$child" || code=$?
    done
    child=""
    if [[ -n $stopping ]]; then exit 143; fi
    return "$code"
}

echo "run-tests: tests/unit tests/integration tests/deploy on $TEST_WORKERS workers"
first=0
run_pytest "${common[@]}" -n "$TEST_WORKERS" --dist loadfile \
    tests/unit tests/integration tests/deploy "${extra[@]}" || first=$?
echo "run-tests: tests/faults tests/security in one process"
second=0
run_pytest "${common[@]}" -p no:xdist tests/faults tests/security "${extra[@]}" || second=$?
if [[ $first == 5 && $second == 5 ]]; then exit 5; fi
first=$(status "$first")
second=$(status "$second")
echo "run-tests: exit $first (unit, integration, deploy), $second (faults, security)"
if [[ $first != 0 ]]; then exit "$first"; fi
exit "$second"
