"""The virtual node: the unmodified firmware (firmware/*.py) on a simulated ESP32.

    from lampwatch.vnode import Scenario, VirtualNode
    sc = Scenario(duration_s=120).lamp("red", 12.0, "on", flicker_hz=100)
    node = VirtualNode(config, sc, collector=("127.0.0.1", 4210))
    node.run_until(60)            # simulated seconds, much faster than real time
    node.inject("wifi_down", duration_s=30)
    node.run_until(120)
    node.frames                   # [SentFrame(t_s, data)], every datagram the node sent

Engines: "cpython" (fast; many nodes in one process; real UDP socket or pty) and
"micropython" (the real MicroPython VM under Node.js; frames are ACKed inside the VM).
"""

from .links import Link, MemoryLink, PtyLink, SentFrame, UdpLink
from .node import VirtualNode, run_plant
from .scenario import Scenario

__all__ = ["Link", "MemoryLink", "PtyLink", "Scenario", "SentFrame", "UdpLink", "VirtualNode",
           "run_plant"]
