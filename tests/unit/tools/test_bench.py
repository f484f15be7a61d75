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
