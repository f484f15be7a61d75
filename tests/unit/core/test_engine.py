"""The reconciler (kernelsync.core.engine) on the in-memory kernel: repair after link events
and outside changes, ownership, the deletion gate, retries and backoff, lost replies."""
import errno

import pytest

from kernelsync.core.model import AF_INET, KNexthop, ResilientSpec, parse_prefix
from kernelsync.core.ops import NEXTHOP_DEL, NEXTHOP_SET, ROUTE_DEL, ROUTE_SET, Target
from kernelsync.core.port import ResyncNeeded
from kernelsync.kernel.fake import FakeKernel
from tests.support.fakes import PROTO, dev, flap, kroute, make, nexthop_on, ready_run, route, via


def test_link_down_shrinks_group_routes_stay_and_up_restores_without_route_writes():
    engine, kernel = make()
    for i in range(50):
        route(engine, "198.51.100.%d/32" % i, dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/32")
    writes_before = dict(kernel.stats.writes)
    flap(engine, kernel, "a", 1.0, up=False)
    assert len(kernel.nexthops[gid].group) == 1
    assert sum(1 for k in kernel.routes) == 50
    flap(engine, kernel, "a", 2.0, up=True)
    assert len(kernel.nexthops[gid].group) == 2
    flap(engine, kernel, "b", 3.0, carrier=False)
    assert len(kernel.nexthops[gid].group) == 1 and len(kernel.routes) == 50
    flap(engine, kernel, "b", 4.0, carrier=True)
    assert len(kernel.nexthops[gid].group) == 2
    assert kernel.stats.writes["route-set"] == writes_before["route-set"]  # routes kept their nhid


def test_outside_deletes_are_repaired():
    engine, kernel = make()
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    route(engine, "203.0.113.2/32", dev("c"))
    ready_run(engine)
    key1 = (100,) + parse_prefix("203.0.113.1/32") + (20,)
    del kernel.routes[key1]  # `ip route del`
    engine.request_full_sync()
    engine.run(1.0)
    assert kroute(kernel, "203.0.113.1/32") is not None
    single = kroute(kernel, "203.0.113.2/32")
    kernel._delete_nh(single)  # `ip nexthop del`: notified
    engine.on_nexthop_event(True, KNexthop(id=single, family=AF_INET, protocol=PROTO), 2.0, writer=4242)
    engine.run(2.0)
    assert kroute(kernel, "203.0.113.2/32") == single


def test_foreign_objects_untouched():
    kernel = FakeKernel(PROTO)
    a = kernel.add_link("a")
    kernel.add_link("b")
    kernel.add_link("c")
    foreign_nh = {5: KNexthop(id=5, family=AF_INET, protocol=PROTO, oif=a),  # our protocol, outside our range
                  1500: KNexthop(id=1500, family=AF_INET, protocol=12, oif=a)}  # in range, not ours
    kernel.nexthops.update(foreign_nh)
    foreign_routes = {(100,) + parse_prefix("192.0.2.0/24") + (20,): (12, 1500),  # other protocol
                      (254,) + parse_prefix("192.0.2.0/24") + (20,): (PROTO, 5),  # other table
                      (100,) + parse_prefix("198.51.100.0/24") + (20,): (12, 5)}  # prefix we also own
    kernel.routes.update(foreign_routes)
    engine, kernel = make(kernel)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine)
    engine.request_full_sync()
    engine.run(1.0)
    assert {i: kernel.nexthops[i] for i in foreign_nh} == foreign_nh
    assert {k: kernel.routes[k] for k in foreign_routes} == foreign_routes


def test_nothing_deleted_until_every_feed_is_ready_then_stale_is_swept():
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "203.0.113.1/32", dev("a"))
    route(engine, "203.0.113.2/32", dev("b"))
    ready_run(engine)
    engine2, _ = make(kernel)
    engine2.rib.add_source("ospf", 110)
    route(engine2, "203.0.113.1/32", dev("a"))
    engine2.rib.set_ready("static")
    engine2.run(1.0)  # ospf not ready: 203.0.113.2 stays
    assert kroute(kernel, "203.0.113.2/32") is not None
    engine2.rib.set_ready("ospf")
    engine2.request_full_sync()
    engine2.run(2.0)
    assert kroute(kernel, "203.0.113.2/32") is None  # swept
    assert kroute(kernel, "203.0.113.1/32") is not None


def test_refused_write_is_retried_with_backoff():
    engine, kernel = make(retry_initial=1.0)
    kernel.fail_next(lambda op: op.kind is ROUTE_SET, errno.ENOMEM, times=2)
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine, 0.0)
    assert kroute(kernel, "203.0.113.1/32") is None
    assert engine.deadline() == pytest.approx(1.0)
    engine.run(0.5)
    assert kroute(kernel, "203.0.113.1/32") is None  # not before its time
    engine.run(1.0)  # second failure: next try after 2 s
    assert engine.deadline() == pytest.approx(3.0)
    engine.run(3.0)
    assert kroute(kernel, "203.0.113.1/32") is not None
    assert not engine.failures


def test_failed_member_leaves_group_until_it_is_accepted():
    engine, kernel = make(retry_initial=1.0)
    kernel.fail_next(nexthop_on(kernel, "b"), errno.EINVAL, times=1)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine, 0.0)
    gid = kroute(kernel, "203.0.113.1/32")
    assert gid is not None and len(kernel.nexthops[gid].group) == 1  # forwarding on the member that works
    engine.run(1.0)
    assert len(kernel.nexthops[gid].group) == 2


def test_lost_replies_trigger_a_full_resync():
    class Overflowing(FakeKernel):
        overflow = 1

        def apply(self, ops, on_chunk=None):
            result = super().apply(ops, on_chunk)
            if self.overflow:
                self.overflow -= 1
                raise ResyncNeeded("netlink receive buffer overflow: replies lost")
            return result

    engine, kernel = make(Overflowing(PROTO))
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine)
    assert engine.need_full and engine.deadline() == 0.0
    dumps = kernel.stats.dumps
    engine.run(0.1)
    assert kernel.stats.dumps > dumps and not engine.need_full
    assert kroute(kernel, "203.0.113.1/32") in engine.observed_nh


def test_member_refused_then_link_down_then_up_rejoins_its_group():
    """The nexthop's failure record is dropped while its link is down; when the link comes back
    and the write is accepted, the member must rejoin the group (no stale one-member group)."""
    engine, kernel = make(retry_initial=0.2)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine, 0.0)
    gid = kroute(kernel, "203.0.113.1/32")
    kernel.fail_next(nexthop_on(kernel, "b"), errno.ENETDOWN)
    kernel.set_link("b", carrier=False)
    kernel.set_link("b", carrier=True)  # back before we react: our write is refused anyway
    engine.on_link_event(1.0)
    engine.run(1.0)
    assert len(kernel.nexthops[gid].group) == 1
    flap(engine, kernel, "b", 1.1, up=False)  # the failure record goes with the link
    assert not engine.failures
    flap(engine, kernel, "b", 1.2, up=True)
    assert len(kernel.nexthops[gid].group) == 2


def test_link_event_retries_a_refused_nexthop_without_waiting_for_backoff():
    engine, kernel = make(retry_initial=10.0)
    kernel.fail_next(nexthop_on(kernel, "b"), errno.ENETDOWN, times=3)
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    ready_run(engine, 0.0)
    engine.run(10.0)
    engine.run(30.0)  # refused three times: the next try would be at 30 + retry_max (30 s)
    gid = kroute(kernel, "203.0.113.1/32")
    assert len(kernel.nexthops[gid].group) == 1 and engine.deadline() == pytest.approx(60.0)
    engine.on_link_event(31.0)  # e.g. its carrier came back
    engine.run(31.0)
    assert len(kernel.nexthops[gid].group) == 2


def test_route_key_of_another_protocol_is_refused_not_replaced():
    kernel = FakeKernel(PROTO)
    for name in ("a", "b", "c"):
        kernel.add_link(name)
    kernel.nexthops[5] = KNexthop(id=5, family=AF_INET, protocol=12, oif=kernel.index("c"))
    key = (100,) + parse_prefix("203.0.113.1/32") + (20,)
    kernel.add_foreign_route(key, 12, 5)
    engine, kernel = make(kernel)
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    assert kernel.routes[key] == (12, 5)
    assert Target("route", key) in engine.failures and "File exists" in engine.failures[Target("route", key)].error


def test_runs_leave_no_cyclic_garbage_among_frozen_objects():
    # Engine.run freezes what survives it (gc.freeze): a cycle among those objects that became
    # garbage later would never be collected.  Churn routes, groups, links and failures, then
    # look for such garbage.
    import gc
    gc.unfreeze()
    gc.collect()  # earlier tests' garbage (whole engines) is not this test's business
    engine, kernel = make(hold=1.0)
    ready_run(engine)
    for i in range(20):
        route(engine, "203.0.113.%d/32" % i, dev("a"), dev("b"), resilient=ResilientSpec() if i % 2 else None)
        route(engine, "198.51.100.%d/32" % i, dev("b"), dev("c"))
    engine.run(1.0)
    flap(engine, kernel, "b", 2.0, up=False)
    kernel.fail_next(nexthop_on(kernel, "b"), errno.EINVAL)
    flap(engine, kernel, "b", 3.0, up=True)
    for i in range(20):
        engine.rib.withdraw("static", parse_prefix("203.0.113.%d/32" % i))
        route(engine, "198.51.100.%d/32" % i, dev("a"))
    engine.run(4.0)
    engine.run(10.0)  # unused groups and nexthops freed after their hold time
    assert len(engine.nhm.groups) == 0
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("kernelsync")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []



def test_a_link_that_changes_between_our_link_read_and_nexthop_dump_is_read_again():
    """The kernel deletes a nexthop silently only when its device goes down or loses carrier: one
    that vanished from a device still believed usable means the link read is stale.  The engine
    reads the links again instead of writing on a device that just went down (a refusal)."""
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    engine.on_link_event(1.0)  # an event (about something else) read the links: b usable
    kernel.set_link("b", carrier=False)  # then b lost its carrier, before the nexthop dump
    result = engine.run(1.0)
    assert kernel.stats.failures == 0 and not engine.failures
    assert result.ops == []  # the kernel took b out of the group itself: nothing to write
    assert [kernel.nexthops[m].oif for m, _ in kernel.nexthops[gid].group] == [kernel.index("a")]


def test_nexthops_the_kernel_is_about_to_delete_are_left_to_it():
    """After a carrier loss the kernel deletes the device's nexthops a moment later (linkwatch):
    deleting them ourselves would race with it (ENOENT).  A repair leaves them, and so does the
    first full sync (the verification after the event); one still there at the next full sync
    is deleted."""
    import attrs
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    b = kernel.index("b")
    (b_nh,) = [i for i, o in kernel.nexthops.items() if o.oif == b]
    kernel.links[b] = attrs.evolve(kernel.links[b], carrier=False)  # the kernel has not flushed b yet
    engine.on_link_event(1.0)
    repair = engine.run(1.0)
    assert not [op for op in repair.ops if op.kind is NEXTHOP_DEL]
    assert b_nh in kernel.nexthops and len(kernel.nexthops[kroute(kernel, "198.51.100.0/24")].group) == 1
    engine.request_full_sync()  # the verification: still there, spared once
    assert not [op for op in engine.run(2.0).ops if op.kind is NEXTHOP_DEL] and b_nh in kernel.nexthops
    engine.request_full_sync()  # the next full sync: still there, still carrierless: ours to delete
    full = engine.run(3.0)
    assert [op.nexthop.id for op in full.ops if op.kind is NEXTHOP_DEL] == [b_nh]
    assert b_nh not in kernel.nexthops and kernel.stats.failures == 0


def test_a_carrier_flap_shorter_than_the_kernels_handling_of_it_costs_no_route():
    """A read that catches a carrier off for a moment the kernel never acts on (linkwatch saw
    the carrier back) must not delete the link's routes: they kept forwarding in the kernel, and
    deleting them left them dark until the next read (the chaos storm: 84 prefixes, 80 ms).
    Neither the repair nor the verification deletes; the carrier back, nothing is written."""
    import attrs
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("b"))
    route(engine, "198.51.101.0/24", dev("b"), dev("c"))
    ready_run(engine)
    b = kernel.index("b")
    before = dict(kernel.routes)
    kernel.links[b] = attrs.evolve(kernel.links[b], carrier=False)  # the kernel will not flush: back soon
    engine.on_link_event(1.0)
    repair = engine.run(1.0)
    assert not [op for op in repair.ops if op.kind in (ROUTE_DEL, NEXTHOP_DEL)]
    engine.request_full_sync()
    verify = engine.run(1.3)
    assert not [op for op in verify.ops if op.kind in (ROUTE_DEL, NEXTHOP_DEL)]
    assert kernel.routes.keys() == before.keys()
    kernel.links[b] = attrs.evolve(kernel.links[b], carrier=True)
    engine.on_link_event(1.4)
    writes = kernel.stats.writes.copy()
    engine.run(1.4)
    engine.request_full_sync()
    engine.run(2.0)
    assert kernel.routes == before
    assert kernel.stats.writes["route-set"] == writes["route-set"] and kernel.stats.writes["route-del"] == writes["route-del"]


def test_another_program_rewriting_our_group_again_and_again_is_not_fought():
    """zebra, having learnt our group, puts its own view back whenever we repair it.  The first
    outside writes are repaired at once; the third within FIGHT_WINDOW is a fight: the object is
    rewritten at most once per hold (1 s, then 2 s, ...), warned once, shown in the stats."""
    import attrs

    from kernelsync.core.engine import FIGHT_HOLD_INITIAL, FIGHT_WRITES
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    ours = kernel.nexthops[gid]
    theirs = attrs.evolve(ours, group=ours.group[:1])  # one member, as zebra writes it back
    writes = []

    def zebra(now):
        kernel.nexthops[gid] = theirs
        engine.on_nexthop_event(False, theirs, now, writer=777)
        before = kernel.stats.writes["nexthop-set"]
        engine.run(now)
        writes.append(kernel.stats.writes["nexthop-set"] - before)

    for t in range(FIGHT_WRITES):
        zebra(1.0 + t * 0.01)
    assert writes == [1] * (FIGHT_WRITES - 1) + [0]  # repaired twice, then held
    assert engine.counters["fights"] == 1 and engine.counters["outside_writes"] == FIGHT_WRITES
    record = engine.outside[gid]
    assert record.writer == 777 and record.theirs == theirs.describe() and record.ours == ours.describe()
    held_until = record.held_until
    assert held_until == pytest.approx(1.0 + 0.02 + FIGHT_HOLD_INITIAL) and engine.deadline() == held_until
    zebra(1.5)  # still held: another write does not move the hold, and nothing is written
    assert writes[-1] == 0 and record.held_until == held_until and kernel.nexthops[gid] == theirs
    engine.run(held_until)  # the hold is over: one rewrite
    assert kernel.nexthops[gid] == ours
    zebra(held_until + 0.1)  # and zebra again: the next hold is twice as long
    assert writes[-1] == 0 and record.hold == 2 * FIGHT_HOLD_INITIAL
    assert str(gid) in engine.show_stats()["fought_objects"]
    assert [n for n in engine.show_nexthops() if n["id"] == gid][0]["outside"]["outside_writes"] == FIGHT_WRITES + 2
    # a program that deletes our object once is simply repaired
    single_engine, single_kernel = make()
    route(single_engine, "203.0.113.1/32", dev("a"))
    ready_run(single_engine)
    nh = kroute(single_kernel, "203.0.113.1/32")
    single_kernel._delete_nh(nh)
    single_engine.on_nexthop_event(True, KNexthop(id=nh, family=AF_INET, protocol=PROTO), 1.0, writer=55)
    single_engine.run(1.0)
    assert kroute(single_kernel, "203.0.113.1/32") == nh and single_engine.counters["fights"] == 0


def test_the_kernels_own_changes_to_our_objects_are_repaired_never_fought():
    """Notifications sent by the kernel itself (port 0) are repaired every time and never count
    as another program's writes: a link flapping fast must not hold our repairs back."""
    import attrs
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    ours = kernel.nexthops[gid]
    shrunk = attrs.evolve(ours, group=ours.group[:1])
    for t in range(10):
        kernel.nexthops[gid] = shrunk
        engine.on_nexthop_event(False, shrunk, 1.0 + t * 0.01, writer=0)
        engine.run(1.0 + t * 0.01)
        assert kernel.nexthops[gid] == ours
    assert engine.counters["outside_writes"] == 0 and engine.counters["fights"] == 0 and not engine.outside


def test_records_of_outside_writes_are_forgotten_when_past_or_when_the_object_is():
    import attrs
    engine, kernel = make(hold=1.0)
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    other = attrs.evolve(kernel.nexthops[gid], group=kernel.nexthops[gid].group[:1])
    engine.on_nexthop_event(False, other, 1.0, writer=9)
    engine.run(1.0)
    assert gid in engine.outside
    engine.run(1.0 + 10.5)  # a single write, long past
    assert gid not in engine.outside
    for t in (20.0, 20.1, 20.2):  # a fight: kept while the object is ours
        engine.on_nexthop_event(False, other, t, writer=9)
    engine.run(30.0)
    assert engine.outside[gid].warned
    engine.rib.withdraw("static", parse_prefix("198.51.100.0/24"))
    engine.run(31.0)
    engine.run(33.0)  # the group is freed after its hold time: so is its record
    assert gid not in engine.nhm.by_id and gid not in engine.outside


def test_a_write_refused_1100_times_keeps_backing_off_and_other_writes_still_go():
    """The retry delay doubled as ``retry_initial * 2 ** (count - 1)``: OverflowError at attempt
    1,025, raised while booking the chunk, before the failure was recorded, so every later run
    raised again and the chunks after it (here: an outside deletion to repair) never went."""
    engine, kernel = make(retry_initial=0.2, retry_max=30.0)
    kernel.chunk = 1  # one op per chunk: the refused route's chunk comes before the others
    stuck = (100,) + parse_prefix("203.0.113.1/32") + (20,)
    kernel.fail_next(lambda op: op.kind is ROUTE_SET and op.key == stuck, errno.ENOMEM, times=1100)
    route(engine, "203.0.113.1/32", dev("a"))
    route(engine, "203.0.113.2/32", dev("b"))
    ready_run(engine, 0.0)
    target = Target("route", stuck)
    other = kroute(kernel, "203.0.113.2/32")
    assert other is not None
    now = 0.0
    deleted = False
    for _ in range(1110):
        if engine.failures[target].count == 1030 and not deleted:  # past 1,024: `ip route del` of the other
            deleted = True
            del kernel.routes[(100,) + parse_prefix("203.0.113.2/32") + (20,)]
            engine.request_full_sync()
        now = max(now, engine.deadline())  # the engine clock never goes back
        engine.run(now)
        if kroute(kernel, "203.0.113.1/32") is not None:
            break
        assert engine.failures[target].next_try - now <= 30.0
    assert engine.failures == {} and kroute(kernel, "203.0.113.1/32") is not None
    assert kroute(kernel, "203.0.113.2/32") == other  # repaired after the 1,030th refusal
    assert engine.counters["retries"] == 1099 and engine.counters["booking_errors"] == 0


def test_a_chunk_whose_booking_raises_does_not_stop_the_others(caplog):
    """An exception while booking one chunk (a bug) is logged once; the later chunks are still
    written and booked, a full read follows, and the refusals of that chunk wait ``retry_max``
    (no tight loop)."""
    engine, kernel = make(retry_initial=0.2, retry_max=30.0)
    kernel.chunk = 1
    bad = (100,) + parse_prefix("203.0.113.1/32") + (20,)
    kernel.fail_next(lambda op: op.kind is ROUTE_SET and op.key == bad, errno.ENOMEM, times=1)
    book = engine._book

    def broken(ops, start, end, refused, now, booking):
        if any(op.kind is ROUTE_SET and op.key == bad for op in ops[start:end]):
            raise KeyError("a bug")
        book(ops, start, end, refused, now, booking)

    engine._book = broken
    for i in range(1, 6):
        route(engine, "203.0.113.%d/32" % i, dev("a"))
    ready_run(engine, 0.0)
    assert engine.counters["booking_errors"] == 1
    assert "booking the kernel's answers" in caplog.text
    assert all(kroute(kernel, "203.0.113.%d/32" % i) is not None for i in range(2, 6))
    assert engine.failures[Target("route", bad)].next_try == pytest.approx(30.0)
    assert engine.need_full and engine.deadline() == 0.0
    engine._book = book
    engine.run(0.1)  # the full read: our view is the kernel's again; the refused route waits
    assert not engine.need_full and engine.deadline() == pytest.approx(30.0)
    assert engine.observed_routes == {k: n for k, (_, n) in kernel.routes.items()}
    engine.run(30.0)
    assert kroute(kernel, "203.0.113.1/32") is not None and not engine.failures


@pytest.mark.parametrize("broken", ["routes", "nexthops", "links", "apply"])
def test_flush_on_exit_deletes_every_object_of_ours_even_when_a_read_fails(broken, caplog):
    """``flush`` stopped half-way (raised) when its dump raised: now it deletes what it can."""
    kernel = FakeKernel(PROTO)
    for name in ("a", "b", "c"):
        kernel.add_link(name)
    foreign_nh = KNexthop(id=1500, family=AF_INET, protocol=12, oif=kernel.index("a"))
    kernel.nexthops[foreign_nh.id] = foreign_nh
    foreign = (100,) + parse_prefix("192.0.2.0/24") + (20,)
    kernel.add_foreign_route(foreign, 12, 1500)
    engine, kernel = make(kernel)
    for i in range(20):
        route(engine, "203.0.113.%d/32" % i, dev("a"), dev("b"))
    route(engine, "198.51.100.1/32", dev("c"))
    ready_run(engine)
    assert len(kernel.routes) == 22 and len(kernel.nexthops) == 5
    if broken == "apply":
        apply = kernel.apply
        calls = []

        def flaky(ops, on_chunk=None):
            calls.append(len(ops))
            if len(calls) == 1:
                raise ResyncNeeded("netlink receive buffer overflow: replies lost")
            return apply(ops, on_chunk)

        kernel.apply = flaky
    else:
        kernel.dump_faults[broken] = ResyncNeeded("dump interrupted")
    engine.flush()
    assert kernel.routes == {foreign: (12, 1500)}
    assert kernel.nexthops == {1500: foreign_nh}
    assert "could not delete" not in caplog.text


def test_an_unused_held_nexthop_whose_write_is_refused_is_not_retried(caplog):
    """It was retried with a warning every few seconds until its hold time ended."""
    engine, kernel = make(hold=30.0, retry_initial=0.2, retry_max=2.0)
    route(engine, "203.0.113.1/32", via("192.0.2.1", "a"))
    route(engine, "203.0.113.2/32", dev("b"))
    ready_run(engine, 0.0)
    nh_id = kroute(kernel, "203.0.113.1/32")
    engine.rib.withdraw("static", parse_prefix("203.0.113.1/32"))
    engine.run(1.0)  # unused: held until 31.0
    assert nh_id in kernel.nexthops
    kernel.fail_next(lambda op: op.kind is NEXTHOP_SET and op.nexthop.id == nh_id, errno.ENETUNREACH, times=1000)
    flap(engine, kernel, "a", 2.0, up=False)  # the kernel drops it
    flap(engine, kernel, "a", 3.0, up=True)  # its re-creation is refused: no route to the gateway
    assert nh_id not in kernel.nexthops and not engine.failures
    refusals = kernel.stats.failures
    now = 3.0
    while engine.deadline() is not None and engine.deadline() < 31.0:
        now = max(now, engine.deadline())
        engine.run(now)
    assert kernel.stats.failures == refusals  # not retried
    assert caplog.text.count("kernel refused") == 1
    assert engine.deadline() == pytest.approx(31.0)
    engine.run(31.0)
    assert nh_id not in engine.nhm.by_id and not engine.nhm.dormant  # freed at its hold end
    assert kernel.stats.failures == refusals


def test_a_parked_nexthop_is_written_again_once_a_route_uses_it():
    engine, kernel = make(hold=30.0, retry_initial=0.2)
    route(engine, "203.0.113.1/32", via("192.0.2.1", "a"))
    kernel.fail_next(lambda op: op.kind is NEXTHOP_SET and op.nexthop.gateway is not None, errno.ENETUNREACH,
                     times=2)
    ready_run(engine, 0.0)  # refused while a route uses it: retried with backoff
    assert Target("nh", 1000) in engine.failures
    engine.rib.withdraw("static", parse_prefix("203.0.113.1/32"))
    engine.run(0.1)  # no user now: its failure record goes
    assert not engine.failures and engine.nhm.dormant == {1000}
    writes = kernel.stats.writes["nexthop-set"]
    engine.run(5.0)
    assert kernel.stats.writes["nexthop-set"] == writes
    route(engine, "203.0.113.1/32", via("192.0.2.1", "a"))
    engine.run(6.0)  # used again: written at once (refused once more, then retried with backoff)
    assert kernel.stats.writes["nexthop-set"] == writes + 1 and Target("nh", 1000) in engine.failures
    engine.run(engine.deadline())
    assert kroute(kernel, "203.0.113.1/32") is not None and not engine.failures and not engine.nhm.dormant


# prefix-independent convergence (PIC): a BGP peer down shrinks the groups in place ---------------
def _forwarding(kernel, table=100):
    """route key -> what the kernel forwards it to: a frozenset of (gateway, device name,
    weight) (weight 1 for a single nexthop, whether a group of one or the nexthop itself)."""
    names = {l.index: l.name for l in kernel.links.values()}
    out = {}
    for key, (_proto, nh_id) in kernel.routes.items():
        if key[0] != table:
            continue
        obj = kernel.nexthops[nh_id]
        legs = obj.group if obj.is_group else ((nh_id, 1),)
        nhs = [(kernel.nexthops[m], w if len(legs) > 1 else 1) for m, w in legs]
        out[key] = frozenset((nh.gateway, names[nh.oif], w) for nh, w in nhs)
    return out


def _fresh_forwarding(engine):
    """What a fresh engine computes from ``engine``'s RIB and links, on a fresh kernel."""
    kernel = FakeKernel(PROTO)
    for link in sorted(engine.kernel.links.values(), key=lambda l: l.index):
        assert kernel.add_link(link.name, up=link.up, carrier=link.carrier) == link.index
    fresh, _ = make(kernel)
    for source, distance in engine.rib.distance.items():
        fresh.rib.add_source(source, distance)
    for prefix, entry in engine.rib.entries.items():
        for source, paths in entry:
            fresh.rib.update(source, prefix, paths)
    ready_run(fresh)
    return _forwarding(kernel)


def _ecmp(engine, n, *nexthops, base=0):
    for i in range(base, base + n):
        route(engine, "10.%d.%d.0/24" % (i // 256, i % 256), *nexthops)


def _writes(kernel, before):
    return {k: v - before[k] for k, v in kernel.stats.writes.items() if v != before[k]}


def test_peer_down_shrinks_the_group_in_place_no_route_writes():
    engine, kernel = make(id_range=(1000, 99_999))
    peer_a, peer_b = via("192.0.2.1", "a"), via("192.0.2.2", "b")
    _ecmp(engine, 10_000, peer_a, peer_b)
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/24")
    before = dict(kernel.stats.writes)
    _ecmp(engine, 10_000, peer_b)  # peer A withdrew every path: B is left alone
    engine.run(1.0)
    assert _writes(kernel, before) == {"nexthop-set": 1}  # the group, in place; 0 routes
    assert len(kernel.nexthops[gid].group) == 1
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    assert {nh for _p, nh in kernel.routes.values()} == {gid}
    engine.run(100.0)  # A's nexthop, in no group now, is freed at its hold end
    assert set(kernel.nexthops) == {gid} | {m for m, _w in kernel.nexthops[gid].group}
    assert len(kernel.nexthops) == 2 and len(engine.nhm.by_id) == 2
    # the next change is ordinary: B withdraws too, the routes go
    before = dict(kernel.stats.writes)
    for i in range(10_000):
        engine.rib.withdraw("static", parse_prefix("10.%d.%d.0/24" % (i // 256, i % 256)))
    engine.run(2.0)
    assert not kernel.routes and _writes(kernel, before)["route-del"] == 10_000


def test_members_back_in_one_batch_grow_the_group_in_place():
    """A next hop that resolves again comes back to every prefix in one batch: the group that
    lost it grows back in place (a peer's paths arriving over several runs still move)."""
    engine, kernel = make()
    pa, pb = via("192.0.2.1", "a"), via("192.0.2.2", "b")
    _ecmp(engine, 100, pa, pb)
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/24")
    _ecmp(engine, 100, pb)
    engine.run(1.0)
    before = dict(kernel.stats.writes)
    _ecmp(engine, 100, pa, pb)
    engine.run(2.0)
    assert _writes(kernel, before) == {"nexthop-set": 1}
    assert {nh for _p, nh in kernel.routes.values()} == {gid} and len(kernel.nexthops[gid].group) == 2
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    before = dict(kernel.stats.writes)
    _ecmp(engine, 100, pb)  # and down again: in place again
    engine.run(3.0)
    assert _writes(kernel, before) == {"nexthop-set": 1}
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_peer_down_three_peers_two_groups_shrink_each_in_place():
    engine, kernel = make()
    pa, pb, pc = via("192.0.2.1", "a"), via("192.0.2.2", "b"), via("192.0.2.3", "c")
    _ecmp(engine, 300, pa, pb, pc)
    _ecmp(engine, 200, pa, pb, base=300)
    _ecmp(engine, 100, pb, pc, base=500)  # no A: untouched
    ready_run(engine)
    before = dict(kernel.stats.writes)
    _ecmp(engine, 300, pb, pc)
    _ecmp(engine, 200, pb, base=300)
    engine.run(1.0)
    # both groups in place: {A,B,C} becomes a twin of the {B,C} group of the last 100 (who
    # keep theirs), {A,B} a group of one (B); no route moves
    assert _writes(kernel, before) == {"nexthop-set": 2}
    assert len({nh for _p, nh in kernel.routes.values()}) == 3
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_peer_down_group_shared_with_prefixes_that_keep_the_member_is_not_shrunk():
    """Only some prefixes of the group lose A: they move (route writes), the rest keep the
    group as it is."""
    engine, kernel = make()
    pa, pb = via("192.0.2.1", "a"), via("192.0.2.2", "b")
    _ecmp(engine, 100, pa, pb)
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/24")
    before = dict(kernel.stats.writes)
    _ecmp(engine, 40, pb)
    engine.run(1.0)
    assert _writes(kernel, before) == {"route-set": 40}
    assert len(kernel.nexthops[gid].group) == 2
    assert kroute(kernel, "10.0.99.0/24") == gid and kroute(kernel, "10.0.0.0/24") != gid
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_best_path_change_is_rewritten_not_shrunk():
    """A set that is no subset of the group's (the best path changed) moves the routes."""
    engine, kernel = make()
    pa, pb, pc = via("192.0.2.1", "a"), via("192.0.2.2", "b"), via("192.0.2.3", "c")
    _ecmp(engine, 50, pa, pb)
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/24")
    _ecmp(engine, 50, pb, pc)
    engine.run(1.0)
    assert kroute(kernel, "10.0.0.0/24") != gid
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_peer_down_split_largest_share_keeps_the_group():
    """Every prefix leaves the group, to two different subsets: the larger share keeps the
    group's id in place, the others move."""
    engine, kernel = make()
    pa, pb, pc = via("192.0.2.1", "a"), via("192.0.2.2", "b"), via("192.0.2.3", "c")
    _ecmp(engine, 60, pa, pb, pc)
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/24")
    before = dict(kernel.stats.writes)
    _ecmp(engine, 40, pb, pc)
    _ecmp(engine, 20, pa, pc, base=40)
    engine.run(1.0)
    w = _writes(kernel, before)
    assert w.get("route-set") == 20 and kroute(kernel, "10.0.0.0/24") == gid
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_peer_down_then_up_and_link_flaps_stay_equal_to_a_fresh_computation():
    engine, kernel = make()
    pa, pb = via("192.0.2.1", "a"), via("192.0.2.2", "b")
    _ecmp(engine, 50, pa, pb)
    route(engine, "192.0.2.128/25", pb)  # a route on B alone all along
    ready_run(engine)
    _ecmp(engine, 50, pb)
    engine.run(1.0)
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    flap(engine, kernel, "b", 2.0, up=False)
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    flap(engine, kernel, "b", 3.0, up=True)
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    _ecmp(engine, 50, pa, pb)  # A is back
    engine.run(4.0)
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    engine.run(100.0)  # holds over: the unused objects go
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    engine.request_full_sync()
    assert not engine.run(101.0).ops  # nothing left to fix


@pytest.mark.parametrize("seed", range(6))
def test_pic_random_sets_and_flaps_stay_equal_to_a_fresh_computation(seed):
    """Random ECMP sets shrinking and growing in batches (peers down and up), with link flaps:
    after every run the kernel forwards each prefix as a fresh computation would, and a full
    read finds nothing to fix."""
    import random
    rnd = random.Random(seed)
    engine, kernel = make()
    peers = [via("192.0.2.%d" % (i + 1), name) for i, name in enumerate("abcab")]
    prefixes = ["10.0.%d.0/24" % i for i in range(40)]
    sets = {}
    for p in prefixes:
        sets[p] = rnd.sample(peers, rnd.randint(1, 4))
        route(engine, p, *sets[p])
    ready_run(engine)
    now = 1.0
    for _step in range(25):
        now += rnd.choice((1.0, 20.0))
        event = rnd.random()
        if event < 0.5:  # a peer down: it leaves every set holding it (not the last member)
            peer = rnd.choice(peers)
            for p in prefixes:
                if peer in sets[p] and len(sets[p]) > 1 and rnd.random() < 0.9:
                    sets[p].remove(peer)
                    route(engine, p, *sets[p])
        elif event < 0.8:  # a peer back
            peer = rnd.choice(peers)
            for p in prefixes:
                if peer not in sets[p] and rnd.random() < 0.8:
                    sets[p].append(peer)
                    route(engine, p, *sets[p])
        else:
            name = rnd.choice("abc")
            kernel.set_link(name, up=not kernel.links[kernel.index(name)].up)
            engine.on_link_event(now)
        engine.run(now)
        assert _forwarding(kernel) == _fresh_forwarding(engine), "step %d" % _step
    engine.request_full_sync()
    engine.run(now + 1)
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    engine.request_full_sync()
    assert not engine.run(now + 2).ops
    engine.run(now + 100)  # every hold over: only what routes use is left
    used = {nh for _proto, nh in kernel.routes.values()}
    used |= {m for nh in list(used) if kernel.nexthops[nh].is_group for m, _w in kernel.nexthops[nh].group}
    assert set(kernel.nexthops) == used
    assert not [e for e in engine.nhm.by_id.values() if engine.nhm.unused(e)]  # none leaked


def test_bgp_session_down_through_the_feed_shrinks_the_group_in_place():
    """End to end: 1,000 prefixes from two eBGP peers (ECMP over both), ExaBGP reports peer A
    down: the BGP feed withdraws A's paths in one commit and the group is replaced in place."""
    from kernelsync.feeds.bgp import BgpRib, BgpSettings
    from kernelsync.feeds.exabgp import Parser
    from tests.unit.feeds.bgp_lines import B, announce, lab_resolver, msg
    kernel = FakeKernel(PROTO)
    for name in ("ha", "hb"):
        kernel.add_link(name)
    engine, _ = make(kernel)
    engine.rib.add_source("ebgp", 20)
    engine.rib.add_source("ibgp", 200)
    resolver = lab_resolver()
    bgp = BgpRib(engine.rib, resolver, BgpSettings(), now=0.0)
    parser = Parser()

    def lines(*texts):
        for text in texts:
            event = parser.parse(text)
            if event is not None:
                bgp.handle(event, 0.0)
        bgp.commit()

    nlris = ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(1000)]
    lines(msg("state", {"state": "up"}), announce(nlris, "192.0.2.1"),
          msg("state", {"state": "up"}, **B), announce(nlris, "192.0.2.9", **B))
    ready_run(engine)
    gids = {nh for _p, nh in kernel.routes.values()}
    assert len(kernel.routes) == 1000 and len(gids) == 1 and len(kernel.nexthops[next(iter(gids))].group) == 2
    before = dict(kernel.stats.writes)
    lines(msg("state", {"state": "down", "reason": "hold timer"}))
    engine.run(1.0)
    assert _writes(kernel, before) == {"nexthop-set": 1}
    assert {nh for _p, nh in kernel.routes.values()} == gids
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_restart_after_a_peer_down_adopts_the_groups_of_one_and_the_twins_without_writes():
    """After shrinks in place the kernel has routes on a group of one member (where a fresh
    computation uses the nexthop) and on a twin of a group: a restart adopts both by the
    routes' ids and writes nothing."""
    engine, kernel = make()
    pa, pb, pc = via("192.0.2.1", "a"), via("192.0.2.2", "b"), via("192.0.2.3", "c")
    route(engine, "192.0.2.128/25", pb)  # on the nexthop of B itself all along
    _ecmp(engine, 100, pa, pb)
    _ecmp(engine, 50, pa, pb, pc, base=100)
    _ecmp(engine, 20, pb, pc, base=150)
    ready_run(engine)
    _ecmp(engine, 100, pb)
    _ecmp(engine, 50, pb, pc, base=100)
    engine.run(1.0)
    assert len({nh for _p, nh in kernel.routes.values()}) == 4  # B, {B} group, {B,C} and its twin
    restarted, _ = make(kernel)
    route(restarted, "192.0.2.128/25", pb)
    _ecmp(restarted, 100, pb)
    _ecmp(restarted, 50, pb, pc, base=100)
    _ecmp(restarted, 20, pb, pc, base=150)
    a_nexthop = next(i for i, o in kernel.nexthops.items() if o.oif == kernel.index("a"))
    before = dict(kernel.stats.writes)
    ready_run(restarted, 2.0)
    assert _writes(kernel, before) == {"nexthop-del": 1} and a_nexthop not in kernel.nexthops  # only held
    assert _forwarding(kernel) == _fresh_forwarding(restarted)
    restarted.request_full_sync()
    assert not restarted.run(3.0).ops
    before = dict(kernel.stats.writes)  # and a next peer down shrinks them in place again
    _ecmp(restarted, 50, pc, base=100)
    _ecmp(restarted, 20, pc, base=150)
    restarted.run(4.0)
    assert _forwarding(kernel) == _fresh_forwarding(restarted)


def test_a_full_sync_keys_the_observed_routes_by_the_fibs_own_keys():
    """A dump decodes a new RouteKey per route; kept as the observed view it would be a second
    copy of every key (128 bytes a route): a full sync in one go (the first, or a kernel port
    without sliced dumps) uses the FIB's key objects instead."""
    engine, kernel = make()
    engine.sliced = False
    for i in range(20):
        route(engine, "198.51.100.%d/32" % i, dev("a"), dev("b"))
    ready_run(engine)
    kernel.routes = {tuple(list(k)): v for k, v in kernel.routes.items()}  # keys as a dump decodes them
    fib_keys = {k: k for k in engine.fib.routes}
    engine.request_full_sync()
    engine.run(1.0)
    assert len(engine.observed_routes) == 20 and engine.observed_routes == engine.fib.routes
    assert all(k is fib_keys[k] for k in engine.observed_routes)
    assert all(k is fib_keys[k] for keys in engine._by_nh.values() for k in keys)


def test_a_restart_shares_the_observed_keys_once_the_fib_is_built():
    """Adopting a table, the dump comes before the FIB: its keys are shared right after it."""
    engine, kernel = make()
    for i in range(20):
        route(engine, "198.51.100.%d/32" % i, dev("a"), dev("b"))
    ready_run(engine)
    kernel.routes = {tuple(list(k)): v for k, v in kernel.routes.items()}  # keys as a dump decodes them
    writes = dict(kernel.stats.writes)
    again, _ = make(kernel)  # a restart on the same kernel
    for i in range(20):
        route(again, "198.51.100.%d/32" % i, dev("a"), dev("b"))
    again.start(0.0)
    ready_run(again)
    assert dict(kernel.stats.writes) == writes  # adopted: nothing written
    fib_keys = {k: k for k in again.fib.routes}
    assert len(again.observed_routes) == 20 and all(k is fib_keys[k] for k in again.observed_routes)
    assert all(k is fib_keys[k] for keys in again._by_nh.values() for k in keys)
