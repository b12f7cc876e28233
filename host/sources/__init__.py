"""Where frames come from: a UDP listener and serial ports, each feeding Collector.submit."""
