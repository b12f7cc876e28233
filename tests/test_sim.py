"""The simulated ESP32 behaves like the port (py/scheduler.c, ports/esp32/machine_pin.c, the
PCNT): scheduled handlers with latency, a queue of 8, the pin read when the handler runs, GC
pauses, the pulse counter's glitch filter, the UARTs, the LAN's DNS. No firmware here."""

import pytest
from lampwatch.vnode import Scenario
from lampwatch.vnode import periph as P
from lampwatch.vnode import sim as S

GPIO = 25


def make(timeline, faults=(), latency=(), end_us=1_000_000, **kw):
    sc = {"inputs": {GPIO: (0, timeline)}, "faults": list(faults), "end_us": end_us,
          "latency": list(latency)}
    s = S.Sim(sc, **kw)
    pin = s.pin(GPIO)
    runs = []
    pin.irq(handler=lambda p: runs.append((s.now, p.value())), trigger=3)
    return s, pin, runs


def test_a_handler_runs_after_its_latency_and_reads_the_pin_then():
    # a 40 us spike, handlers 50-100 us late: both run after the spike, both read 0
    s, _, runs = make([(1000, ("pulses", 1, 40, 1000))], irq_latency_us=(50, 100))
    s.advance(5000)
    assert [v for _, v in runs] == [0, 0]
    assert 1050 <= runs[0][0] <= 1100 and runs[1][0] >= runs[0][0] + 25  # one at a time
    assert s.irq_run == 2 and s.irq_dropped == 0


def test_the_latency_follows_the_scenario_timeline():
    s, _, runs = make([(1000, ("pulses", 2, 10, 100_000))], latency=[(50_000, 300, 300)],
                      irq_latency_us=(60, 60))
    s.advance(200_000)
    # the fall's handler waits for the rise's to return (25 us): one at a time
    assert [t for t, _ in runs] == [1060, 1085, 101_300, 101_325]


def test_the_queue_holds_8_and_loses_the_rest_while_a_gc_runs():
    # 10 edges within a 15 ms GC: 8 handlers run when it ends, 2 calls are lost
    s, _, runs = make([(2000, ("pulses", 5, 500, 1000))], irq_latency_us=(50, 50))
    s.stop_at = 1 << 40
    s.gc_pending = 15_000
    s.sleep_ms(0)  # the main loop ends its pass: the GC runs from now (0) to 15 ms
    s.advance(20_000)
    assert s.gcs == 1 and [t for t, _ in runs] == [15_000 + 25 * i for i in range(8)]
    assert len(runs) == 8 and s.irq_dropped == 2 and s.irq_max_queue == 8
    assert {v for _, v in runs} == {0}  # all read the level after the last edge


def test_a_gc_fault_waits_for_the_main_loop():
    s, _, runs = make([(3000, ("level", 1))], faults=[(1000, "gc", 10_000)],
                      irq_latency_us=(50, 50))
    s.stop_at = 1 << 40
    s.advance(4000)  # the loop sleeps: the GC is pending, the handler runs on time
    assert runs == [(3050, 1)] and s.gc_pending == 10_000
    s.sleep_ms(5)
    assert s.gcs == 1 and s.now == 4000 + 10_000 + 5000


def test_instant_mode_runs_the_handler_at_the_edge():
    s, _, runs = make([(1000, ("pulses", 1, 40, 1000))], irq="instant")
    s.advance(5000)
    assert runs == [(1030, 1), (1070, 0)]  # clock 30 us on, the level of the edge


def test_pcnt_glitch_filter_and_edges():
    sc = Scenario(duration_s=1)
    edges = [(0.001, 1), (0.001010, 0),  # a 10 us glitch: filtered out
             (0.002, 1), (0.002020, 0),  # 20 us: counted
             (0.003, 1), (0.004, 0)]
    sc.pattern("good", 0.0, n=1, every_s=0.5, edges=edges)
    cfg = {"counts": {"good": {"pin": GPIO, "active_low": False}}}
    s = S.Sim(sc.compile(cfg))
    pin = s.pin(GPIO)
    both = s.counter(0, pin, edge=3, filter_ns=12_787)
    rising = P.Counter(s, 1, pin, edge=1, filter_ns=0)
    s.counters.append(rising)
    s.advance(10_000)
    assert (both.value(), rising.value()) == (4, 3)


def test_a_counter_read_in_a_handler_costs_it_time():
    s, pin, _ = make([(1000, ("pulses", 2, 10, 20))], irq_latency_us=(0, 0),
                     handler_us=25, counter_read_us=40)
    ctr = s.counter(0, pin, edge=3)
    runs = []
    pin.irq(handler=lambda p: runs.append((s.now, ctr.value())), trigger=3)
    s.advance(2000)
    assert [t for t, _ in runs] == [1000, 1065, 1130, 1195]


def test_uart0_is_the_console_and_uart2_the_link_with_line_time():
    s = S.Sim({"inputs": {}, "faults": [], "end_us": 10})
    m = s.modules()["machine"]
    m.UART(0).write(b"hello")
    u = m.UART(2, baudrate=115200, tx=17, rx=16)
    u.write(b"x" * 115)  # 1150 bits at 115200 baud: 9983 us on the line
    assert s.uart0 == b"hello" and s.sent == 1
    assert not u.txdone()
    s.advance(9_981)
    assert not u.txdone()
    s.advance(9_983)
    assert u.txdone()
    with pytest.raises(ValueError):
        m.UART(3)


def test_the_lan_dns_answers_unless_it_is_down():
    s = S.Sim({"inputs": {}, "faults": [(0, "dns_down", 1_000_000)], "end_us": 5_000_000},
              dns={"collector.plant.local": "10.0.0.9"}, dns_us=20_000)
    s.advance(1)
    sock = P.Socket(s)
    q = bytes.fromhex("0001010000010000000000000963")  # id 1, "c" ...
    name = b"".join(bytes([len(p)]) + p for p in b"collector.plant.local".split(b"."))
    q = q[:12] + name + b"\x00\x00\x01\x00\x01"
    sock.sendto(q, ("192.168.10.1", 53))  # lost: the server is down
    s.advance(1_000_000)
    sock.sendto(q, ("192.168.10.1", 53))
    with pytest.raises(OSError):
        sock.recv(512)  # the answer needs 20 ms
    s.advance(1_020_000)
    reply = sock.recv(512)
    assert reply[-4:] == bytes([10, 0, 0, 9]) and s.dns_queries == 2
