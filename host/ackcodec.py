"""The ACK frame encoder (docs/protocol.md), the one the host has, in CPython and MicroPython.

Written in the subset both run, because the ACKs are made in two runtimes: the collector's
(lampwatch.protocol.encode_ack is this function with protocol.hmac_tag) and the MicroPython VM,
where the virtual node's stand-in collector ACKs frames in the VM itself and
lampwatch.protocol cannot be imported (vnode/mpvm.py loads this file there, with the VM's own
hmac module). The node checks ACKs with its own codec (firmware/lwproto.py).
"""

import struct

VERSION = 1  # the protocol version: the high nibble of every frame's first byte
T_ACK = 5  # the ACK's frame type: the low nibble
TAG_LEN = 8  # bytes of HMAC-SHA256 that end every frame
ACK_LEN = 22
BITMAP_SEQS = 32  # an ACK names a base sequence and a bitmap of the 32 after it


def encode_acks(node_id, boot_id, seqs, key, hmac_sha256):
    """ACK frames acknowledging `seqs` of one boot of a node, as few frames as possible.

    Args:
        node_id, boot_id: the node and the boot the sequences belong to.
        seqs: sequence numbers (any order, repeats allowed).
        key: the node's key.
        hmac_sha256: (key, message) -> HMAC-SHA256 of message (its first TAG_LEN bytes at
            least): the runtime's one HMAC.

    Returns:
        A list of ACK_LEN-byte frames.
    """
    out = []
    pending = sorted(set(seqs))
    while pending:
        base = pending[0]
        bitmap = 0
        rest = []
        for s in pending[1:]:
            d = s - base - 1
            if d < BITMAP_SEQS:
                bitmap |= 1 << d
            else:
                rest.append(s)
        msg = struct.pack(">BHIBHI", (VERSION << 4) | T_ACK, node_id, boot_id, base >> 16,
                          base & 0xFFFF, bitmap)
        out.append(msg + hmac_sha256(key, msg)[:TAG_LEN])
        pending = rest
    return out
