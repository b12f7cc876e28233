"""The unified namespace: the plant's state to an MQTT broker, raw frames to a NATS JetStream."""
