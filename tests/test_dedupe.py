"""SeenWindow against a plain set of every (node, boot, seq) ever accepted: same answers."""

from __future__ import annotations

import random

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


def test_answers_like_a_set_of_everything_with_resends_gaps_and_restarts():
    rng = random.Random(7)
    journal, truth = _Journal(), set()
    window = SeenWindow(journal, span=64, max_boots=3)
    batch: list[tuple[int, int, int]] = []
    high = {}
    for i in range(30_000):
        node, boot = rng.randint(1, 3), rng.choice((1, 1, 1, 2))
        top = high.get((node, boot), 0)
        r = rng.random()
        if r < 0.6:
            seq = top + 1
        elif r < 0.7:
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
    assert journal.asked > 100  # the journal was asked below the window, and answered


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
