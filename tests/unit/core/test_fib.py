"""RIB -> desired FIB (kernelsync.core.fib): fallback between sources, unusable nexthops,
devices that come and go; through an engine on the in-memory kernel."""
import logging

import pytest

from kernelsync.core.model import parse_prefix
from kernelsync.kernel.fake import FakeKernel
from tests.support.fakes import PROTO, dev, flap, kroute, make, ready_run, route, via


def test_all_members_down_falls_back_to_next_best_source_then_returns():
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    route(engine, "198.51.100.0/24", dev("c"), source="ospf")
    ready_run(engine)
    best = kroute(kernel, "198.51.100.0/24")
    assert kernel.nexthops[best].is_group
    kernel.set_link("a", up=False)
    kernel.set_link("b", up=False)  # the kernel deletes the group and the route silently
    assert kroute(kernel, "198.51.100.0/24") is None
    engine.on_link_event(1.0)
    engine.run(1.0)
    fallback = kroute(kernel, "198.51.100.0/24")
    assert kernel.nexthops[fallback].oif == kernel.index("c")
    assert engine.fib.selected(parse_prefix("198.51.100.0/24")) == "ospf"
    flap(engine, kernel, "a", 2.0, up=True)
    assert kroute(kernel, "198.51.100.0/24") == best  # same group id, back on the best source
    flap(engine, kernel, "b", 3.0, up=True)
    assert len(kernel.nexthops[best].group) == 2


def test_route_with_no_usable_nexthop_is_removed_and_reinstalled():
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"))
    ready_run(engine)
    flap(engine, kernel, "a", 1.0, carrier=False)
    assert kroute(kernel, "198.51.100.0/24") is None and not engine.fib.routes
    flap(engine, kernel, "a", 2.0, carrier=True)
    assert kroute(kernel, "198.51.100.0/24") is not None


def test_device_that_appears_later_gets_its_route():
    kernel = FakeKernel(PROTO)
    kernel.add_link("a")
    engine, kernel = make(kernel)
    route(engine, "203.0.113.10/32", dev("a"), dev("tapZ"))
    ready_run(engine)
    gid = kroute(kernel, "203.0.113.10/32")
    assert len(kernel.nexthops[gid].group) == 1
    kernel.add_link("tapZ")
    engine.on_link_event(1.0)
    engine.run(1.0)
    assert len(kernel.nexthops[gid].group) == 2


def test_unresolvable_source_is_skipped_and_next_source_used(caplog):
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "2001:db8:1::/64", via("192.0.2.1", "a"))  # an IPv4 next hop for an IPv6 route
    route(engine, "2001:db8:1::/64", dev("b"), source="ospf")
    route(engine, "203.0.113.1/32", dev("a"))
    ready_run(engine)
    assert "2001:db8:1::/64 from static not usable" in caplog.text
    assert engine.fib.selected(parse_prefix("2001:db8:1::/64")) == "ospf"
    assert kernel.nexthops[kroute(kernel, "2001:db8:1::/64")].oif == kernel.index("b")
    assert kroute(kernel, "203.0.113.1/32") is not None


def test_two_gateways_on_one_link_come_back_after_the_link_does():
    """Both members of the group sit on one device: they come back in the same link update."""
    engine, kernel = make()
    route(engine, "198.51.100.0/24", via("10.0.0.1", "a"), via("10.0.0.2", "a"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    flap(engine, kernel, "a", 1.0, up=False)
    assert kroute(kernel, "198.51.100.0/24") is None
    flap(engine, kernel, "a", 2.0, up=True)
    assert kroute(kernel, "198.51.100.0/24") == gid and len(kernel.nexthops[gid].group) == 2


def test_all_members_back_in_one_update():
    engine, kernel = make()
    route(engine, "198.51.100.0/24", dev("a"), dev("b"))
    ready_run(engine)
    gid = kroute(kernel, "198.51.100.0/24")
    kernel.set_link("a", up=False)
    kernel.set_link("b", up=False)
    engine.on_link_event(1.0)
    engine.run(1.0)
    kernel.set_link("a", up=True)
    kernel.set_link("b", up=True)
    engine.on_link_event(2.0)  # one event batch for both
    engine.run(2.0)
    assert kroute(kernel, "198.51.100.0/24") == gid and len(kernel.nexthops[gid].group) == 2



def test_prefixes_that_find_no_nexthop_id_wait_for_one_and_the_others_go(caplog):
    """IdRangeExhausted (a RuntimeError) escaped sync_rib after it had taken the RIB's dirty
    set: the prefixes after it were never installed, even once ids were freed."""
    caplog.set_level(logging.INFO, logger="kernelsync")
    engine, kernel = make(id_range=(1000, 1004), hold=10.0)  # 5 ids: nexthops a, b, c and 2 groups
    route(engine, "203.0.113.1/32", dev("a"), dev("b"))
    route(engine, "203.0.113.2/32", dev("a"), dev("c"))
    route(engine, "203.0.113.3/32", dev("b"), dev("c"))  # no id left for its group
    route(engine, "203.0.113.4/32", dev("a"), dev("b"), dev("c"))  # nor for this one
    route(engine, "203.0.113.5/32", dev("a"))  # its nexthop has an id: goes
    route(engine, "203.0.113.6/32", dev("a"), dev("b"))  # shares the first group: goes
    ready_run(engine, 0.0)
    assert [kroute(kernel, "203.0.113.%d/32" % i) is not None for i in range(1, 7)] == [
        True, True, False, False, True, True]
    assert engine.fib.exhaustions == 1 and len(engine.fib.starved) == 2
    assert caplog.text.count("exhausted") == 1  # once, not per prefix
    assert engine.deadline() is None or engine.deadline() > 0  # no busy loop while nothing frees
    engine.run(1.0)
    engine.request_full_sync()
    engine.run(2.0)  # still no id: still waiting, nothing lost, no second warning
    assert len(engine.fib.starved) == 2 and caplog.text.count("exhausted") == 1
    for i in (1, 2, 5, 6):  # their groups (2 ids) and nexthop c (1 id) are freed at the hold end
        engine.rib.withdraw("static", parse_prefix("203.0.113.%d/32" % i))
    engine.run(3.0)
    now = engine.deadline()
    assert now == pytest.approx(13.0)
    while engine.deadline() is not None and engine.deadline() <= now:
        engine.run(now)
    assert not engine.fib.starved and "every waiting prefix has its id now" in caplog.text
    for i, devs in ((3, {"b", "c"}), (4, {"a", "b", "c"})):
        nh_id = kroute(kernel, "203.0.113.%d/32" % i)
        assert nh_id is not None
        assert {kernel.links[kernel.nexthops[m].oif].name for m, _ in kernel.nexthops[nh_id].group} == devs
    assert all(kroute(kernel, "203.0.113.%d/32" % i) is None for i in (1, 2, 5, 6))
    assert len(kernel.nexthops) == 5 and engine.fib.exhaustions == 1


def test_a_group_that_finds_no_id_gives_back_its_members_ids_to_the_next_prefix():
    """The members created for a group that then found no id were dropped, but the range stayed
    marked full: a later prefix needing one id waited for ever while that id was free."""
    kernel = FakeKernel(PROTO)
    for name in "abcd":
        kernel.add_link(name)
    engine, kernel = make(kernel, id_range=(1000, 1003), hold=10.0)
    for i, name in enumerate("abc"):
        route(engine, "203.0.113.%d/32" % i, dev(name))
    ready_run(engine, 0.0)
    route(engine, "198.51.100.0/24", dev("a"), dev("d"))  # d's nexthop takes the last id, its group finds none
    route(engine, "198.51.101.0/24", via("192.0.2.9", "a"))  # one id: the one d's nexthop gave back
    engine.run(1.0)
    engine.request_full_sync()
    engine.run(2.0)
    assert kroute(kernel, "198.51.101.0/24") == 1003
    assert list(engine.fib.starved) == [parse_prefix("198.51.100.0/24")]


def test_an_entry_made_for_a_prefix_that_then_waits_for_an_id_is_not_leaked():
    """Two sources for one prefix: the first source's new entry took the last id, the second
    found none.  The first entry was left with no user and no unused time, so it was never
    freed, even after the prefix was withdrawn: its id and its kernel object leaked."""
    kernel = FakeKernel(PROTO)
    for name in "abcd":
        kernel.add_link(name)
    engine, kernel = make(kernel, id_range=(1000, 1003), hold=10.0)
    engine.rib.add_source("bgp", 20)
    for i, name in enumerate("abc"):
        route(engine, "203.0.113.%d/32" % i, dev(name))
    ready_run(engine, 0.0)
    route(engine, "198.51.100.0/24", dev("d"))
    route(engine, "198.51.100.0/24", dev("e"), source="bgp")
    engine.run(1.0)
    engine.rib.withdraw("static", parse_prefix("198.51.100.0/24"))
    engine.rib.withdraw("bgp", parse_prefix("198.51.100.0/24"))
    engine.run(2.0)
    for t in (20.0, 100.0):
        engine.request_full_sync()
        engine.run(t)
    assert sorted(kernel.nexthops) == [1000, 1001, 1002] and sorted(engine.nhm.by_id) == [1000, 1001, 1002]


# PIC when a peer comes back: growth deferral (FibBuilder._defer) -----------------------------
from tests.support.fakes import via  # noqa: E402
from tests.unit.core.test_engine import _ecmp, _forwarding, _fresh_forwarding, _writes  # noqa: E402

PA, PB, PC = via("192.0.2.1", "a"), via("192.0.2.2", "b"), via("192.0.2.3", "c")


def _shrunk(n=1000, hold=1000.0):
    """``n`` prefixes ECMP over A and B, then A down (the group shrunk in place to B): the
    engine, its kernel and the group's id."""
    engine, kernel = make(id_range=(1000, 99_999), hold=hold)
    _ecmp(engine, n, PA, PB)
    ready_run(engine)
    gid = kroute(kernel, "10.0.0.0/24")
    _ecmp(engine, n, PB)
    engine.run(1.0)
    assert {nh for _p, nh in kernel.routes.values()} == {gid} and len(kernel.nexthops[gid].group) == 1
    return engine, kernel, gid


def test_a_peer_back_prefix_by_prefix_grows_the_group_in_place_without_route_writes():
    """A's paths come back 100 prefixes per run while the source is held: each growth is
    deferred (the kernel keeps forwarding on B) until the last prefix of the group has it, then
    the group grows in place: one nexthop write for the whole return, no route write."""
    engine, kernel, gid = _shrunk(1000)
    engine.rib.hold_growth("static", 100.0)
    before = dict(kernel.stats.writes)
    shrunk = _forwarding(kernel)
    for batch in range(10):
        _ecmp(engine, 100, PA, PB, base=batch * 100)
        engine.run(2.0 + batch * 0.1)
        if batch < 9:
            assert _writes(kernel, before) == {} and _forwarding(kernel) == shrunk
            assert len(engine.fib.deferred) == (batch + 1) * 100
    assert _writes(kernel, before) == {"nexthop-set": 1}  # the group, in place; 0 routes
    assert not engine.fib.deferred and engine.fib.growth_due() is None
    assert {nh for _p, nh in kernel.routes.values()} == {gid} and len(kernel.nexthops[gid].group) == 2
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    engine.rib.release_growth("static")  # the end-of-RIB: nothing left to do
    assert not engine.run(3.0).ops
    engine.request_full_sync()
    assert not engine.run(4.0).ops


def test_deferred_growths_are_not_written_by_a_full_sync_and_are_applied_at_the_release():
    """Release at the end-of-RIB with a mixed group: 60 of 100 prefixes came back (deferred,
    nothing written, even by a full sync); 40 did not.  At the release the 60 move to the
    larger set (route writes), the 40 keep the group; both forward as a fresh computation."""
    engine, kernel, gid = _shrunk(100)
    engine.rib.hold_growth("static", 100.0)
    _ecmp(engine, 60, PA, PB)
    before = dict(kernel.stats.writes)
    engine.run(2.0)
    engine.request_full_sync()
    engine.run(3.0)
    assert _writes(kernel, before) == {} and len(engine.fib.deferred) == 60
    assert engine.deadline() == 100.0  # the hold's end (the group hold time and the resync are later)
    engine.rib.release_growth("static")
    assert engine.deadline() == 0.0
    engine.run(4.0)
    assert not engine.fib.deferred
    writes = _writes(kernel, before)
    assert writes["route-set"] == 60 and "route-del" not in writes
    assert kroute(kernel, "10.0.99.0/24") == gid and len(kernel.nexthops[gid].group) == 1
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_deferred_growths_are_applied_at_the_holds_end_when_no_release_comes():
    engine, kernel, gid = _shrunk(100)
    engine.rib.hold_growth("static", 30.0)
    _ecmp(engine, 60, PA, PB)
    engine.run(2.0)
    assert len(engine.fib.deferred) == 60 and engine.deadline() == 30.0
    engine.run(29.9)
    assert len(engine.fib.deferred) == 60
    engine.run(engine.deadline())
    assert not engine.fib.deferred and engine.fib.growth_due() is None
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_any_other_change_of_a_deferred_prefix_applies_at_once_and_can_complete_the_group():
    engine, kernel, gid = _shrunk(100)
    engine.rib.hold_growth("static", 100.0)
    _ecmp(engine, 90, PA, PB)
    engine.run(2.0)
    before = dict(kernel.stats.writes)
    engine.rib.withdraw("static", parse_prefix("10.0.0.0/24"))  # deferred, withdrawn: goes now
    route(engine, "10.0.1.0/24", PA, PC)  # deferred, then another set (the best path changed): now
    engine.run(3.0)
    assert kroute(kernel, "10.0.0.0/24") is None and kroute(kernel, "10.0.1.0/24") not in (None, gid)
    assert _writes(kernel, before) == {"route-del": 1, "route-set": 1, "nexthop-set": 2}  # C, {A,C}
    assert len(engine.fib.deferred) == 88
    before = dict(kernel.stats.writes)
    for i in range(90, 100):  # the 10 that did not come back go: every other user waits for {A,B}
        engine.rib.withdraw("static", parse_prefix("10.0.%d.0/24" % i))
    engine.run(4.0)
    assert _writes(kernel, before) == {"route-del": 10, "nexthop-set": 1}  # the group grew in place
    assert not engine.fib.deferred and {kroute(kernel, "10.0.%d.0/24" % i) for i in range(2, 90)} == {gid}
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_a_peer_new_to_prefixes_on_a_plain_nexthop_is_not_deferred():
    """No earlier group (the prefixes were on B's nexthop alone, a first peer): the routes must
    move to a group anyway, so they do at once; a prefix with no route yet is installed at once."""
    engine, kernel = make()
    _ecmp(engine, 50, PB)
    ready_run(engine)
    engine.rib.hold_growth("static", 100.0)
    _ecmp(engine, 50, PA, PB)
    route(engine, "192.0.2.128/25", PA, PB)
    engine.run(1.0)
    assert not engine.fib.deferred
    assert kroute(kernel, "192.0.2.128/25") is not None
    assert len(kernel.nexthops[kroute(kernel, "10.0.0.0/24")].group) == 2
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_a_deferred_prefix_whose_group_goes_down_is_applied_at_once():
    """B's link goes down while the prefixes wait on the group of B for A: the kernel drops
    their routes; they are applied at once on the larger set (A), as a fresh computation."""
    engine, kernel, gid = _shrunk(100)
    engine.rib.hold_growth("static", 100.0)
    _ecmp(engine, 60, PA, PB)
    engine.run(2.0)
    flap(engine, kernel, "b", 3.0, up=False)
    assert len(engine.fib.deferred) == 0
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    flap(engine, kernel, "b", 4.0, up=True)
    assert _forwarding(kernel) == _fresh_forwarding(engine)
    engine.rib.release_growth("static")
    engine.run(5.0)
    assert _forwarding(kernel) == _fresh_forwarding(engine)


def test_a_set_back_to_what_the_group_holds_while_deferred_writes_nothing():
    """A flaps again before its end-of-RIB: the deferred prefixes are back to {B}, the content
    of the group they are on: nothing to write (no move to B's own nexthop)."""
    engine, kernel, gid = _shrunk(100)
    engine.rib.hold_growth("static", 100.0)
    _ecmp(engine, 60, PA, PB)
    engine.run(2.0)
    before = dict(kernel.stats.writes)
    _ecmp(engine, 60, PB)
    engine.run(3.0)
    assert _writes(kernel, before) == {} and not engine.fib.deferred
    engine.rib.release_growth("static")
    engine.run(4.0)
    assert _writes(kernel, before) == {} and _forwarding(kernel) == _fresh_forwarding(engine)
