"""``python -m bench.otlp_sink PORT``: an OTLP/HTTP receiver that accepts and drops spans.

The bench runs it as its own process while gateways trace (``--tracing``), so the
gateway's whole export path (batching, protobuf encoding, HTTP POST) is measured
without a collector competing for the gateway's event loop. It answers every
``POST /v1/traces`` with an empty ``ExportTraceServiceResponse`` (200) and counts the
spans it decoded (``GET /`` answers the count so far; SIGTERM prints it on stderr).
"""

from __future__ import annotations

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPANS = 0


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        global SPANS
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            SPANS += sum(len(scope.spans) for scope in resource.scope_spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = str(SPANS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        print(f"otlp_sink: {SPANS} spans received", file=sys.stderr)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
