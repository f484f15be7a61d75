"""Engine.on_route_event (kernelsync.core.engine): a route of ours deleted or rewritten by
another program is repaired at once; one deleted again and again is not fought."""
import pytest

from kernelsync.core.engine import FIGHT_HOLD_INITIAL, FIGHT_WRITES
from kernelsync.core.model import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, parse_prefix
from tests.support.fakes import dev, kroute, make, ready_run, route

KEY = (100,) + parse_prefix("203.0.113.1/32") + (20,)


def test_our_route_deleted_by_another_program_is_repaired_at_once():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine)
    nh = kroute(kernel, "203.0.113.1/32")
    del kernel.routes[KEY]  # `ip route del`, notified
    engine.on_route_event(True, KEY, 0, 1.0, writer=4242)
    assert engine.deadline() == 0.0  # due now, not at the next periodic resync
    engine.run(1.0)
    assert kroute(kernel, "203.0.113.1/32") == nh
    assert engine.counters["outside_writes"] == 1 and engine.counters["full_syncs"] == 1  # no full read
    # rewritten by another program onto another object: put back
    kernel.routes[KEY] = (kernel.routes[KEY][0], 5)
    engine.on_route_event(False, KEY, 5, 2.0, writer=4242)
    engine.run(2.0)
    assert kroute(kernel, "203.0.113.1/32") == nh
    # the same as we hold it (or already gone): nothing to do; a device-only route is scope link
    assert kernel.scopes[KEY] == RT_SCOPE_LINK
    engine.on_route_event(False, KEY, nh, 3.0, writer=4242, scope=RT_SCOPE_LINK)
    assert not engine.dirty and engine.counters["outside_writes"] == 2
    # rewritten with the scope only changed (later: no fight): put back
    kernel.scopes.pop(KEY)
    engine.on_route_event(False, KEY, nh, 20.0, writer=4242, scope=RT_SCOPE_UNIVERSE)
    assert engine.dirty and engine.counters["outside_writes"] == 3
    engine.run(20.0)
    assert kroute(kernel, "203.0.113.1/32") == nh and kernel.scopes[KEY] == RT_SCOPE_LINK


def test_the_kernel_deleting_our_route_is_followed_not_counted():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    del kernel.routes[KEY]
    engine.on_route_event(True, KEY, 0, 1.0, writer=0)  # the kernel itself (IPv6 on a downed link)
    engine.run(1.0)
    assert kroute(kernel, "203.0.113.1/32") is not None and engine.counters["outside_writes"] == 0


def test_a_route_deleted_again_and_again_is_rewritten_once_per_hold():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    writes = []

    def other_daemon(now):
        kernel.routes.pop(KEY, None)
        engine.on_route_event(True, KEY, 0, now, writer=777)
        before = kernel.stats.writes["route-set"]
        engine.run(now)
        writes.append(kernel.stats.writes["route-set"] - before)

    for t in range(FIGHT_WRITES):
        other_daemon(1.0 + t * 0.01)
    assert writes == [1] * (FIGHT_WRITES - 1) + [0]  # repaired twice, then held
    assert engine.counters["fights"] == 1
    record = engine.outside[KEY]
    assert record.writer == 777 and record.theirs == "deleted"
    assert record.held_until == pytest.approx(1.02 + FIGHT_HOLD_INITIAL) and engine.deadline() == record.held_until
    engine.run(1.5)
    assert kroute(kernel, "203.0.113.1/32") is None  # held
    engine.run(record.held_until)  # the hold is over: one rewrite
    assert kroute(kernel, "203.0.113.1/32") is not None
    other_daemon(3.0)
    assert writes[-1] == 0 and record.hold == 2 * FIGHT_HOLD_INITIAL
    assert "203.0.113.1/32" in engine.show_stats()["fought_objects"]
