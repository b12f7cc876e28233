"""BootCounts (host/boot_counts.py): its flat list of boots against a plain model of the rule."""

import random

import pytest
from lampwatch.boot_counts import BOOTS_KEPT, BootCounts, Delta
from lampwatch.protocol import COUNT_MOD

HALF = COUNT_MOD // 2


class Model:
    """The rule as the module docstring states it, per boot id in a dict kept in least
    recently used order (what BootCounts kept before it became one flat list)."""

    def __init__(self):
        self.boots = {}

    def heartbeat(self, boot_id, good, ng, made, boot_start):
        best = self.boots.pop(boot_id, None)
        if best is None:  # a new boot makes room (a restart's seeds may exceed BOOTS_KEPT)
            best, d_good, d_ng = [good, ng, boot_start], good, ng
            self.boots[boot_id] = best
            while len(self.boots) > BOOTS_KEPT:
                del self.boots[next(iter(self.boots))]
        else:
            d_good = (good - best[0]) % COUNT_MOD
            d_good = 0 if d_good >= HALF else d_good
            d_ng = (ng - best[1]) % COUNT_MOD
            d_ng = 0 if d_ng >= HALF else d_ng
            best[0], best[1] = (best[0] + d_good) % COUNT_MOD, (best[1] + d_ng) % COUNT_MOD
            self.boots[boot_id] = best
        since = best[2]
        best[2] = max(since, made)
        return Delta(d_good, d_ng, best[0], best[1], min(since, made))

    def unchanged(self, boot_id, good, ng):
        best = self.boots.get(boot_id)
        return best is not None and best[:2] == [good, ng]

    def made(self, boot_id, made):
        best = self.boots.pop(boot_id)
        self.boots[boot_id] = best
        best[2] = max(best[2], made)

    def seed(self, boot_id, good_total, ng_total, made):
        totals = [good_total % COUNT_MOD, ng_total % COUNT_MOD]
        best = self.boots.get(boot_id)
        if best is None:
            self.boots[boot_id] = [*totals, made]
            return
        for i, value in enumerate(totals):
            if 0 < (value - best[i]) % COUNT_MOD < HALF:
                best[i] = value


@pytest.mark.parametrize("seed", range(40))
def test_the_same_deltas_as_the_rule_over_boots_restarts_and_late_frames(seed):
    rng = random.Random(seed)
    boots = rng.sample(range(1, 2 ** 32), rng.randint(1, 7))  # more than BOOTS_KEPT at times
    got, want = BootCounts(), Model()
    totals = {b: [rng.randrange(COUNT_MOD), rng.randrange(COUNT_MOD)] for b in boots}
    t = 1000.0
    for _ in range(400):
        boot = rng.choice(boots[:rng.randint(1, len(boots))])  # the early boots most
        op = rng.random()
        t += rng.random()
        made = t - rng.choice([0.0, 0.0, 5.0, 50.0])  # late frames now and then
        if op < 0.6:  # a heartbeat: counts on, the same, or an older frame's (behind)
            g, n = totals[boot]
            step = rng.choice([0, 0, 1, 3, -2, 1 << 31])
            good, ng = (g + step) % COUNT_MOD, (n + rng.choice([0, 1])) % COUNT_MOD
            if step > 0 and step < HALF:
                totals[boot] = [good, ng]
            assert got.heartbeat(boot, good, ng, made, t - 100) == \
                want.heartbeat(boot, good, ng, made, t - 100)
        elif op < 0.8:
            g, n = totals[boot]
            assert got.unchanged(boot, g, n) == want.unchanged(boot, g, n)
            if want.unchanged(boot, g, n):
                got.made(boot, made)
                want.made(boot, made)
        else:  # a restart seeds a journaled count event's totals
            g, n = rng.randrange(2 ** 33), rng.randrange(2 ** 33)
            got.seed(boot, g, n, made)
            want.seed(boot, g, n, made)
    # what each boot kept, in the same order
    flat = [x for b, best in want.boots.items() for x in (b, *best)]
    assert list(got) == flat


def test_a_new_boot_counts_from_zero_and_a_late_heartbeat_of_the_old_one_still_adds():
    c = BootCounts()
    assert c.heartbeat(1, 10, 1, 5.0, 0.0) == Delta(10, 1, 10, 1, 0.0)
    assert c.heartbeat(2, 3, 0, 9.0, 8.0) == Delta(3, 0, 3, 0, 8.0)  # a new boot: from 0
    assert c.heartbeat(1, 12, 1, 6.0, 0.0) == Delta(2, 0, 12, 1, 5.0)  # the old boot, late
    assert c.heartbeat(1, 11, 1, 6.5, 0.0) == Delta(0, 0, 12, 1, 6.0)  # behind: nothing
    assert c.unchanged(2, 3, 0) and not c.unchanged(2, 4, 0) and not c.unchanged(3, 0, 0)
    with pytest.raises(KeyError):
        c.made(3, 1.0)
