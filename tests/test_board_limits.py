"""The board under attack, with real sockets against `lampwatch collect` in a subprocess
(bench/board_attack.py): memory, ingest latency from real UDP frames, legitimate requests,
the log. The collector runs with an open-file limit of 1024 (a service without LimitNOFILE).
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import board_attack


def attack(**settings):
    args = argparse.Namespace(clients=150, headers=100, header_kib=64, seconds=10.0, nodes=200,
                              idle=1100, nofile=1024, sync="full", sources=1, attacker=None)
    for key, value in settings.items():
        setattr(args, key, value)
    result = board_attack.run(args)
    print(json.dumps(result, indent=1))
    return result


def test_header_flood_and_idle_flood_leave_memory_ingest_and_the_board_alone():
    """150 clients each sending 100 headers of 64 KiB, never finishing, reconnecting when
    closed: the collector grows less than 64 MB, 200 nodes' frames are ACKed with p99 under
    20 ms, and a board user's requests meanwhile all succeed. Then 1,100 idle connections
    do not stop the page, the JSON or the live stream, from their address or another."""
    r = attack()
    base, hit = r["baseline"], r["headers_attack"]
    assert hit["attacker"]["bytes_sent"] > 150 * 64 * 1024  # the attack did happen...
    assert hit["attacker"]["answered_400"] > 0  # ...and was refused at the parser
    assert hit["rss_growth_mib"] < 64
    assert hit["acked"] == hit["frames"] and base["acked"] == base["frames"]
    # Timing: the goal is p99 under 20 ms. On a machine loaded by something else, the
    # same-run baseline (no attack) is itself over it; then the attack may add at most
    # 10 ms to what the machine already costs, so the test still fails if the attack hurts.
    limit = max(20.0, base["latency_ms"]["p99"] + 10.0)
    assert hit["latency_ms"]["p99"] < limit, f"baseline p99 {base['latency_ms']['p99']} ms"
    assert hit["board_requests"] >= 10 and hit["board_ok"] == hit["board_requests"], \
        r["legit_errors"]
    flood = r["idle_flood"]
    assert flood["connected"] == 1100
    assert {k: v["status"] for k, v in flood["legit"].items()} == {
        f"{path} from {src}": 200 for path in ("/", "/api/board", "/events")
        for src in ("127.0.0.4", "127.0.0.5")}
    assert flood["collector_fds_peak"] < 1024  # never near EMFILE
    log = r["collector_log"]
    assert (log["tracebacks"], log["pin_shown"], log["exit_code"]) == (0, False, 0)
    assert log["lines"] < 60  # one line per refusal, rate-limited: not a flood


def test_the_same_flood_from_150_addresses_stays_bounded():
    """Per-address limits do not help when every client has its own address: memory stays
    under 64 MB and the board user's requests succeed all the same."""
    r = attack(sources=150, seconds=6.0, idle=0)
    hit = r["headers_attack"]
    assert hit["attacker"]["answered_400"] >= 150
    assert hit["rss_growth_mib"] < 64
    assert hit["acked"] == hit["frames"]
    assert hit["board_ok"] == hit["board_requests"] >= 6, r["legit_errors"]
    log = r["collector_log"]
    assert (log["tracebacks"], log["pin_shown"], log["exit_code"]) == (0, False, 0)
