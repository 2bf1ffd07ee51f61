# meshgate container image (docs/deploy.md).
#
#   docker build -t meshgate .
#   docker run --rm -v "$PWD/gateway.yaml:/etc/meshgate/gateway.yaml:ro" \
#       -v meshgate-state:/var/lib/meshgate -p 8080:8080 meshgate
#
# Config: /etc/meshgate/gateway.yaml (mount it; edits are picked up, see reloading in
# docs/operations.md). State (the local dead-letter store): the volume
# /var/lib/meshgate. Admin API (/healthz, /readyz, /metrics): port 8080.
# CI cannot build images (no Docker engine there): tests/deploy/test_image.py lints this
# file with hadolint, checks its rules, and runs its install steps (wheel into a fresh
# venv, then a real route through the installed `meshgate`).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the wheel, installed into a virtualenv that the runtime stage copies ------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install --no-cache-dir "build==1.6.1"
COPY pyproject.toml README.md ./
COPY routing ./routing
COPY connectors ./connectors
COPY gateway ./gateway
# uvloop (the "fast" extra) saves 5-20% CPU per event (docs/performance.md); aiomqtt
# is for compose/traffic.py, which runs in this image as the legacy MQTT device.
RUN python -m build --wheel --outdir /dist . \
    && python -m venv /opt/meshgate \
    && /opt/meshgate/bin/pip install --no-cache-dir /dist/meshgate-*.whl "uvloop==0.23.0" \
       "aiomqtt==2.5.1" \
    && /opt/meshgate/bin/meshgate --version

# --- runtime -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="meshgate" \
      org.opencontainers.image.description="Event-mesh gateway: Kafka, AMQP 0-9-1, MQTT and NATS as CloudEvents" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 meshgate \
    && useradd --system --uid 10001 --gid meshgate --no-create-home \
        --home-dir /var/lib/meshgate --shell /usr/sbin/nologin meshgate \
    && mkdir -p /etc/meshgate /var/lib/meshgate \
    && chown meshgate:meshgate /var/lib/meshgate
COPY --from=build /opt/meshgate /opt/meshgate
COPY deploy/docker/healthcheck.py /usr/local/lib/meshgate/healthcheck.py
ENV PATH=/opt/meshgate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MESHGATE_STATE_DIR=/var/lib/meshgate
VOLUME ["/var/lib/meshgate"]
WORKDIR /var/lib/meshgate
USER 10001:10001
EXPOSE 8080
# meshgate is PID 1 and handles SIGTERM itself: it stops consuming, drains in-flight
# events for up to gateway.drain_timeout_seconds, commits and exits. It starts no
# child processes, so no init is needed for reaping (`docker run --init` does no harm).
# Give it drain_timeout_seconds + 30 s: `docker stop -t 60`, terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/meshgate/healthcheck.py"]
ENTRYPOINT ["meshgate"]
CMD ["run", "--admin", "0.0.0.0:8080", "/etc/meshgate/gateway.yaml"]
