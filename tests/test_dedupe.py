"""SeenWindow against a plain set of every (node, boot, seq) ever accepted: same answers."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest
from lampwatch.dedupe import SeenWindow


class _Journal:
    """The journal's answers SeenWindow uses: what was committed (a set, as the UNIQUE key)."""

    def __init__(self):
        self.stored: set[tuple[int, int, int]] = set()
        self.asked = 0

    def has_frame(self, node_id, boot_id, seq):
        self.asked += 1
        return (node_id, boot_id, seq) in self.stored

    def seqs_from(self, node_id, boot_id, min_seq):
        return [s for n, b, s in self.stored if (n, b) == (node_id, boot_id) and s >= min_seq]


# in_order: the share of frames that follow the node's highest (most of a plant's, where
# a boot keeps no bitmap: gaps, resends and restarts then move it to one and back)
@pytest.mark.parametrize("in_order, seed", [(0.6, 7), (0.97, 8), (0.995, 9)])
def test_answers_like_a_set_of_everything_with_resends_gaps_and_restarts(in_order, seed):
    rng = random.Random(seed)
    journal, truth = _Journal(), set()
    window = SeenWindow(journal, span=64, max_boots=3)
    batch: list[tuple[int, int, int]] = []
    high = {}
    for i in range(30_000):
        node, boot = rng.randint(1, 3), rng.choice((1, 1, 1, 2))
        top = high.get((node, boot), 0)
        r = rng.random()
        if r < in_order:
            seq = top + 1
        elif r < in_order + (1 - in_order) / 4:
            seq = top + rng.randint(2, 300)  # a gap: frames lost or still in the outbox
        else:
            seq = max(0, top - rng.randint(0, 400))  # a resend, old or recent
        high[(node, boot)] = max(top, seq)
        key = (node, boot, seq)
        assert window.add(*key) == (key not in truth), (i, key)
        if key not in truth:
            truth.add(key)
            batch.append(key)
        if rng.random() < 0.02:  # a commit; batches of up to hundreds of frames
            journal.stored.update(batch)
            batch.clear()
            window.prune()
        if rng.random() < 0.0005:  # a restart: only the journal is left
            journal.stored.update(batch)
            batch.clear()
            window = SeenWindow(journal, span=64, max_boots=3)
    assert journal.asked > 20  # the journal was asked below the window, and answered


def test_a_number_that_leaves_the_window_before_its_commit_is_still_known():
    journal = _Journal()
    window = SeenWindow(journal, span=8)
    assert window.add(1, 1, 5)
    assert window.add(1, 1, 100)  # 5 is far below the window now, and not yet stored
    assert not window.add(1, 1, 5)
    journal.stored |= {(1, 1, 5), (1, 1, 100)}
    window.prune()
    assert not window.add(1, 1, 5)  # now the journal knows it
    assert window.add(1, 1, 6)


def test_a_boot_without_a_gap_in_its_span_keeps_no_bitmap():
    # 100 nodes at the default span, each with a gap and a resend early in its boot, then
    # 2,300 frames in order: the gap has left the span. Measured by this test: 115 bytes a
    # boot in all (its key, entry and numbers, with the dict's share); 213 while a boot was
    # keyed by a tuple and kept a list; 514 before that, when each kept a bitmap of the span.
    journal = _Journal()
    window = SeenWindow(journal)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for node in range(1, 101):
            assert window.add(node, 7, 10)
            assert window.add(node, 7, 14)  # 11-13 lost, for now
            assert window.add(node, 7, 12)  # a resend
            assert not window.add(node, 7, 12)
            for seq in range(15, 2_315):
                assert window.add(node, 7, seq)
            assert not window.add(node, 7, 2_000)
            assert window.add(node, 7, 11)  # below the span now: asks the journal (empty here)
        window.prune()
        gc.collect()  # (a full collection also empties the free lists of tuples)
        per_boot = (tracemalloc.get_traced_memory()[0] - before) / 100
    finally:
        tracemalloc.stop()
    assert per_boot < 150, per_boot


def test_the_widest_node_boot_and_seq_numbers_keep_apart():
    # The window packs (node, boot) and a run's numbers into ints: at the protocol's
    # widest values (16-bit node, 32-bit boot and seq) nothing runs into a neighbour.
    rng = random.Random(11)
    journal, truth = _Journal(), set()
    window = SeenWindow(journal, span=64)
    top = 2 ** 32 - 1
    pairs = [(65535, top), (65535, top - 1), (65534, top), (1, 0), (2, 0), (1, top)]
    high = dict.fromkeys(pairs, top - 3000)
    for i in range(20_000):
        node, boot = rng.choice(pairs)
        r = rng.random()
        seq = (min(top, high[(node, boot)] + (1 if r < 0.9 else rng.randint(2, 100)))
               if r < 0.95 else high[(node, boot)] - rng.randint(0, 200))
        high[(node, boot)] = max(high[(node, boot)], seq)
        key = (node, boot, seq)
        assert window.add(*key) == (key not in truth), (i, key)
        truth.add(key)
        if rng.random() < 0.05:
            journal.stored |= truth
            window.prune()
    assert max(s for _, _, s in truth) == top  # the highest seq was reached
    # a run that ends at the highest seq, its start still within the span
    for seq in range(top - 10, top + 1):
        assert window.add(3, 5, seq)
    assert not any(window.add(3, 5, seq) for seq in range(top - 10, top + 1))
