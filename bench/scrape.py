"""``python -m bench.scrape INTERVAL URL...``: fetch each URL every INTERVAL seconds.

The bench runs this as its own process while a gateway has metrics on (``--metrics``):
scraping from the load generator's event loop slowed the load generator itself (its
NATS publisher and Kafka consumer), which lowered the gateway's batching and so
raised its CPU per event by ~15% on NATS->Kafka: a cost of the measurement, not of
the metrics. Errors are ignored (the gateway may not listen yet).
"""

from __future__ import annotations

import sys
import time
import urllib.request


def main() -> None:
    interval, urls = float(sys.argv[1]), sys.argv[2:]
    while True:
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()
            except OSError:
                pass
        time.sleep(interval)


if __name__ == "__main__":
    main()
