"""``kernelsync bench``'s memory accounting (:func:`memory_breakdown`) on the fake kernel: every
per-route structure is found, each object counted once, and the total agrees with what
tracemalloc saw allocated for the same state."""
import gc
import time
import tracemalloc

from kernelsync.core.engine import Engine
from kernelsync.kernel.fake import FakeKernel
from kernelsync.tools.bench import DEV_A, DEV_B, PROTOCOL, kcfg, load_rib, memory_breakdown

N = 4000


def installed_engine(n):
    kernel = FakeKernel(PROTOCOL)
    kernel.add_link(DEV_A)
    kernel.add_link(DEV_B)
    engine = Engine(kcfg(), kernel)
    load_rib(engine, n, 4)
    now = time.monotonic()
    engine.start(now)
    engine.run(now)
    return engine, kernel


def test_breakdown_finds_each_route_structure_and_counts_shared_objects_once():
    engine, kernel = installed_engine(N)
    assert len(kernel.routes) == N
    parts = {name: (size, count) for name, size, count in memory_breakdown(engine)}
    assert parts["rib: Prefix tuples (family, dst, plen)"][1] == N
    # one shared entry per (source, paths): 4 groups, not one object per prefix
    assert parts["rib: per-prefix entries ((source, paths), ...) (single-source ones shared)"][1] < 20
    assert parts["fib.routes: RouteKey tuples (table, family, dst, plen, metric)"][1] == N
    # the RIB's dst bytes are shared by the RouteKeys: counted once, under the RIB
    assert parts["rib: dst bytes of the Prefixes"][1] == N
    assert parts["fib.routes: dst bytes not shared with the RIB"][1] == 0
    # 4 groups' paths tuples, shared by every prefix on them, are a handful of objects
    assert parts["rib: paths tuples, Path, NexthopSpec (shared)"][1] < 50
    # one users set per nexthop entry (8 gateways, 4 groups)
    assert parts["nhm: users sets of nexthops and groups"][1] == len(engine.nhm.by_id) == 12


def test_breakdown_total_agrees_with_tracemalloc():
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine, _kernel = installed_engine(N)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    walked = sum(size for _name, size, _count in memory_breakdown(engine))
    # the fake kernel holds its own copy of the routes (its dict, not the engine's): the
    # engine's state is most of what was traced, and the walk finds no more than was allocated
    assert 0.5 * traced < walked < 1.1 * traced, (walked, traced)


def test_a_dropped_engine_is_freed_by_collect_although_run_froze_it():
    """engine.run ends with gc.freeze(); a dropped engine's cycles (group <-> members) would
    keep its whole RIB alive: each bench round's memory figure would start from the last
    round's leftovers."""
    from kernelsync.tools.bench import collect
    collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine, kernel = installed_engine(N)
        held = tracemalloc.get_traced_memory()[0] - before
        del engine, kernel
        collect()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held > 100 * N
    assert left < held / 20, (left, held)


# the table case (--mix full, --withdraw) -------------------------------------------------------
import ipaddress  # noqa: E402
import struct  # noqa: E402

from kernelsync.core.model import AF_INET, AF_INET6  # noqa: E402
from kernelsync.kernel import codec  # noqa: E402
from kernelsync.tools.bench import (METRIC, RawTableWriter, TABLE, mixed_table, host_table,  # noqa: E402
                                    table_paths)


def test_mixed_table_has_realistic_distinct_prefixes_on_groups_of_their_own_family():
    spec = mixed_table(20_000, 40, seed=3)
    assert (spec.n4, spec.n6) == (20_000, 4_000)
    assert spec.groups == 40 and spec.groups6 >= 1 and spec.groups4 + spec.groups6 == 40
    keys = [(fam, dst, plen) for fam, dst, plen, _g in spec.routes]
    assert len(set(keys)) == len(keys)  # every prefix once
    hist = spec.plen_histogram()
    assert min(hist["ipv4"]) >= 8 and max(hist["ipv4"]) == 24
    assert min(hist["ipv6"]) >= 16 and max(hist["ipv6"]) == 48
    assert max(hist["ipv4"], key=hist["ipv4"].get) == 24 and hist["ipv4"][24] > 0.5 * spec.n4
    assert max(hist["ipv6"], key=hist["ipv6"].get) == 48 and len(hist["ipv4"]) >= 10 and len(hist["ipv6"]) >= 10
    for fam, dst, plen, g in spec.routes:
        net = ipaddress.ip_network((dst, plen))  # ValueError if host bits are set
        assert net.is_global or net.version == 6
        assert spec.group_family(g) == fam  # an IPv6 route never on an IPv4 group
    assert {g for *_x, g in spec.routes} == set(range(40))  # every group used
    paths = table_paths(spec)
    assert [p[0].nexthops[0].gw_family for p in paths] == [spec.group_family(g) for g in range(40)]
    assert mixed_table(20_000, 40, seed=3).routes == spec.routes  # deterministic
    assert host_table(10, 4).routes[5] == (AF_INET, struct.pack("!I", 0x0A000006), 32, 1)


class CapturingWriter(RawTableWriter):
    """The raw writer without a socket: keeps what it would send."""

    def __init__(self):  # noqa: D107 (no socket)
        self.seq, self.sends, self.send_s, self.refused, self.sent = 0, 0, 0.0, [], []

    def _send(self, data, first, last):
        self.sent.append(bytes(data))


def split(data):
    out, off = [], 0
    while off < len(data):
        length = struct.unpack_from("=I", data, off)[0]
        out.append(data[off:off + length])
        off += length
    return out


def test_the_raw_writer_sends_what_kernelsync_sends_for_each_family_add_and_delete():
    routes = [(AF_INET, bytes([192, 0, 2, 0]), 24, 7), (AF_INET6, bytes(16), 48, 9), (AF_INET, bytes(4), 8, 7)]
    raw = CapturingWriter()
    raw.write_table(routes)
    raw.write_table(routes, delete=True)
    adds, dels = split(raw.sent[0]), split(raw.sent[1])
    for i, (fam, dst, plen, nh) in enumerate(routes):
        key = (TABLE, fam, dst, plen, METRIC)
        last = i == len(routes) - 1  # NLM_F_ACK on each chunk's last message only
        ack = codec.NLM_F_ACK if last else 0
        assert adds[i] == codec.encode_route_set(1 + i, key, nh, 200, codec.ADD_FLAGS | ack)
        assert dels[i] == codec.encode_route_del(len(routes) + 1 + i, key, 200, codec.NLM_F_REQUEST | ack)
