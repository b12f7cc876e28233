"""The InfluxDB sink: journal events as line protocol, and the forwarder that ships them."""
