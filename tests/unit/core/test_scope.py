"""Route scope (kernelsync.core: nhm, planner, engine; on the in-memory kernel): a route whose
every nexthop is device-only IPv4 is written RT_SCOPE_LINK, as ``ip route add P dev X`` and BIRD
write it; a route with a gateway, and every IPv6 route, RT_SCOPE_UNIVERSE.  A route of ours in
the kernel with the wrong scope is rewritten once; one with the right scope costs no write on
restart."""
import tomllib

from kernelsync.config import parse
from kernelsync.core.model import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, parse_prefix
from kernelsync.core.ops import RouteSet
from kernelsync.core.planner import plan
from kernelsync.feeds.static import StaticFeed
from tests.support.fakes import dev, kroute, make, ready_run, route, via

TABLE, METRIC = 100, 20


def key(prefix):
    return (TABLE,) + parse_prefix(prefix) + (METRIC,)


def scope(kernel, prefix):
    assert kroute(kernel, prefix) is not None, prefix
    return kernel.scopes.get(key(prefix), RT_SCOPE_UNIVERSE)


def routes(engine):
    route(engine, "192.0.2.0/24", dev("a"))  # device-only: link
    route(engine, "192.0.2.64/26", dev("a"), dev("b"))  # a group of device-only nexthops: link
    route(engine, "198.51.100.0/24", via("10.0.0.2", "a"))  # a gateway: universe
    route(engine, "198.51.100.128/25", dev("a"), via("10.0.0.2", "b"))  # one leg with a gateway: universe
    route(engine, "203.0.113.0/24", via("2001:db8::2", "a"))  # RFC 5549: a gateway
    route(engine, "2001:db8:1::/48", dev("a"))  # IPv6: universe (the kernel keeps it so)
    route(engine, "2001:db8:2::/48", dev("a"), dev("b"))


LINK = ("192.0.2.0/24", "192.0.2.64/26")
UNIVERSE = ("198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/24", "2001:db8:1::/48", "2001:db8:2::/48")


def test_device_only_ipv4_routes_are_scope_link_others_universe():
    engine, kernel = make()
    routes(engine)
    result = ready_run(engine)
    sets = {op.key: op.scope for op in result.ops if isinstance(op, RouteSet)}
    assert {p: sets[key(p)] for p in LINK + UNIVERSE} == {**{p: RT_SCOPE_LINK for p in LINK},
                                                          **{p: RT_SCOPE_UNIVERSE for p in UNIVERSE}}
    assert {p: scope(kernel, p) for p in LINK + UNIVERSE} == {**{p: RT_SCOPE_LINK for p in LINK},
                                                              **{p: RT_SCOPE_UNIVERSE for p in UNIVERSE}}
    assert engine.run(1.0).ops == []  # what was written is what is wanted: nothing more
    assert {r["prefix"]: (r["scope"], r["installed"]) for r in engine.show_fib()}["192.0.2.0/24"] == ("link", True)


def test_restart_with_the_right_scope_writes_nothing_with_the_wrong_scope_once():
    engine, kernel = make()
    routes(engine)
    ready_run(engine)
    # a restart on the same kernel: nothing to write
    again, _ = make(kernel)
    routes(again)
    assert ready_run(again).ops == [] and again.observed_scopes == kernel.scopes
    # a kernel written by a version that wrote every route universe: each device-only route is
    # replaced once in place (same nexthop id), the others are left alone
    for p in LINK:
        kernel.scopes.pop(key(p))
    before = {p: kroute(kernel, p) for p in LINK + UNIVERSE}
    third, _ = make(kernel)
    routes(third)
    ops = ready_run(third).ops
    assert sorted((op.key, op.nh_id, op.replace, op.scope) for op in ops) == sorted(
        (key(p), before[p], True, RT_SCOPE_LINK) for p in LINK)
    assert {p: scope(kernel, p) for p in LINK} == {p: RT_SCOPE_LINK for p in LINK}
    assert third.run(1.0).ops == []
    # and the other way: a gateway route found scope link is put back to universe
    kernel.scopes[key("198.51.100.0/24")] = RT_SCOPE_LINK
    third.request_full_sync()
    ops = third.run(2.0).ops
    assert [(op.key, op.scope) for op in ops] == [(key("198.51.100.0/24"), RT_SCOPE_UNIVERSE)]
    assert scope(kernel, "198.51.100.0/24") == RT_SCOPE_UNIVERSE


def test_scope_follows_the_configured_set_not_the_live_members():
    """A group with a gateway member stays universe while that member is down (its set has a
    gateway): a link flap rewrites the group, never the route's scope."""
    engine, kernel = make()
    route(engine, "198.51.100.128/25", dev("a"), via("10.0.0.2", "b"))
    ready_run(engine)
    kernel.set_link("b", up=False)
    engine.on_link_event(1.0)
    ops = engine.run(1.0).ops
    assert not [op for op in ops if isinstance(op, RouteSet)]
    assert scope(kernel, "198.51.100.128/25") == RT_SCOPE_UNIVERSE


def test_fallback_to_a_device_only_source_changes_the_scope():
    engine, kernel = make()
    engine.rib.add_source("ospf", 110)
    route(engine, "198.51.100.0/24", via("10.0.0.2", "a"))
    route(engine, "198.51.100.0/24", dev("c"), source="ospf")
    ready_run(engine)
    assert scope(kernel, "198.51.100.0/24") == RT_SCOPE_UNIVERSE
    kernel.set_link("a", up=False)
    engine.on_link_event(1.0)
    engine.run(1.0)
    assert scope(kernel, "198.51.100.0/24") == RT_SCOPE_LINK
    kernel.set_link("a", up=True)
    engine.on_link_event(2.0)
    engine.run(2.0)
    assert scope(kernel, "198.51.100.0/24") == RT_SCOPE_UNIVERSE


def test_planner_rewrites_a_route_whose_only_difference_is_its_scope():
    k = key("192.0.2.0/24")
    assert plan({}, {}, {k: 7}, {k: 7}).ops == []  # no scopes anywhere: as before
    assert plan({}, {}, {k: 7}, {k: 7}, scopes={7: RT_SCOPE_LINK}).ops == [RouteSet(k, 7, True, RT_SCOPE_LINK)]
    assert plan({}, {}, {k: 7}, {k: 7}, scopes={7: RT_SCOPE_LINK}, observed_scopes={k: RT_SCOPE_LINK}).ops == []
    assert plan({}, {}, {k: 7}, {k: 7}, observed_scopes={k: RT_SCOPE_LINK}).ops == [RouteSet(k, 7, True, 0)]
    # the incremental diff says the same
    assert plan({}, {}, {k: 7}, {k: 7}, route_keys=[k], scopes={7: RT_SCOPE_LINK}).ops == [
        RouteSet(k, 7, True, RT_SCOPE_LINK)]
    assert plan({}, {}, {k: 7}, {k: 7}, route_keys=[k], scopes={7: RT_SCOPE_LINK},
                observed_scopes={k: RT_SCOPE_LINK}).ops == []


def test_static_route_nexthop_dev_is_scope_link():
    cfg = parse(tomllib.loads('''
[kernel]
table = 100
protocol = 200
metric = 20
nexthop_id_range = [1000, 1999]
[[static.route]]
prefix = "192.0.2.0/24"
nexthops = [{dev = "a"}]
[[static.route]]
prefix = "198.51.100.0/24"
nexthops = [{via = "10.0.0.2", dev = "a"}]
'''))
    engine, kernel = make()
    StaticFeed(engine.rib, engine.links, cfg.static_routes, cfg.static_distance).start(None, 0.0)
    engine.run(0.0)
    assert scope(kernel, "192.0.2.0/24") == RT_SCOPE_LINK
    assert scope(kernel, "198.51.100.0/24") == RT_SCOPE_UNIVERSE
