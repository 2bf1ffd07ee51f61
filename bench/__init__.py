"""meshgate benchmark: the gateway against the raw broker clients, side by side.

``python -m bench`` (or ``make bench``) runs every scenario against the loopback
brokers (RabbitMQ 5672, Mosquitto 1883, NATS+JetStream 4222; Kafka is librdkafka's
mock cluster in a child process). For each scenario it measures, in the same run:

a. the raw clients doing the same work without the gateway: publish N messages
   with the source protocol's client and consume them with the same client, then
   the same on the target protocol (``raw`` = the slower of the two);
b. the gateway (``python -m gateway.cli run cfg.yaml`` in a subprocess, config
   generated here) between a raw publisher on the source and a raw consumer on
   the target; its CPU time and peak RSS are read from ``/proc/<pid>``.

Latency is measured in a paced run (1,000 events/s by default): every event
carries its publish time (``CLOCK_MONOTONIC``, in the data), read back by the
target consumer. ``added`` latency = gateway path minus the direct path on the
target protocol, at the same percentile.

At-least-once everywhere unless the scenario says otherwise: JetStream publish
with PubAck and a durable pull consumer (``nats``), Kafka acks=all, AMQP
publisher confirms and manual acks, MQTT QoS 1. ``core-nats-nats`` is core NATS
(at-most-once), as an extra scenario.

``routes-1000`` is in-process and pure: the cost of matching one event against a
1,000-route table with CESQL filters on one source (µs/event).

Results are printed as a table and written to ``bench/results.json``.
See docs/performance.md.
"""
