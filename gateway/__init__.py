"""Gateway: config, runtime, CLI, demo, local brokers."""
