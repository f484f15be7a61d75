"""The rtnetlink sockets (kernelsync.kernel.netlink) on the real kernel in a namespace."""
import socket

import pytest

from kernelsync.core.model import AF_INET, AF_INET6, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, KNexthop, format_prefix, parse_prefix
from kernelsync.core.ops import NexthopSet, RouteDel, RouteSet
from kernelsync.kernel.codec import ROUTE_MESSAGES, RTM_DELROUTE, RTM_NEWROUTE, parse_route
from kernelsync.kernel.netlink import RouteEventSocket, RtNetlink
from kernelsync.tools.netns import wait_for
from tests.support.netns import PROTO

pytestmark = pytest.mark.netns


def test_route_notifications_drop_our_protocol_in_the_kernel(ns):
    """The route notification socket: another protocol's route changes arrive, ours never do."""
    ns.veth("v0", "p0")
    ns.ip("addr", "add", "10.0.0.1/24", "dev", "v0")
    with ns.entered():
        sock = RouteEventSocket(PROTO)
    try:
        ns.ip("route", "add", "198.51.100.0/24", "via", "10.0.0.2", "proto", str(PROTO))
        ns.ip("route", "add", "203.0.113.0/24", "via", "10.0.0.2", "proto", "12")
        ns.ip("route", "del", "198.51.100.0/24", "proto", str(PROTO))
        ns.ip("route", "del", "203.0.113.0/24", "proto", "12")

        seen = []

        def both_foreign_events():
            for msg in sock.read():
                if msg.type in ROUTE_MESSAGES:
                    route = parse_route(msg.data, 16, len(msg.data))
                    seen.append((msg.type, route.protocol, format_prefix(route.prefix)))
            return sum(1 for s in seen if s[1] == 12) == 2
        wait_for(both_foreign_events, timeout=5, what="the foreign route's two notifications")
        assert [s for s in seen if s[1] == 12] == [(RTM_NEWROUTE, 12, "203.0.113.0/24"),
                                                    (RTM_DELROUTE, 12, "203.0.113.0/24")]
        assert all(s[1] != PROTO for s in seen), seen
    finally:
        sock.close()


def test_route_scope_what_the_kernel_accepts_reports_and_deletes(ns):
    """Measured facts the scope handling rests on (kernel 6.18): a route on a nexthop object
    (RTA_NH_ID) is accepted scope link whatever the object (device-only, a group of device-only
    nexthops, a gateway, a mixed group) and dumped with that scope; a replace changes only the
    scope; an IPv6 route is stored universe whatever is written; our deletes (RT_SCOPE_NOWHERE)
    match any scope.  Without a nexthop object the kernel refuses scope link with a gateway."""
    ns.veth("v0", "p0")
    ns.veth("v1", "p1")
    ns.ip("addr", "add", "10.0.0.1/24", "dev", "v0")
    ns.ip("-6", "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad")
    with ns.entered():
        kernel = RtNetlink(PROTO)
    try:
        links = {l.name: l.index for l in kernel.dump_links().values()}
        v0, v1 = links["v0"], links["v1"]
        objects = [KNexthop(1001, AF_INET, PROTO, oif=v0), KNexthop(1002, AF_INET, PROTO, oif=v1),
                   KNexthop(1003, AF_INET, PROTO, oif=v0, gateway=socket.inet_aton("10.0.0.2")),
                   KNexthop(1004, AF_INET6, PROTO, oif=v0)]
        groups = [KNexthop(1005, 0, PROTO, group=((1001, 1), (1002, 1))),
                  KNexthop(1006, 0, PROTO, group=((1001, 1), (1003, 1)))]

        def key(prefix):
            return (100,) + parse_prefix(prefix) + (20,)

        link = {"192.0.2.0/24": 1001, "192.0.2.64/26": 1005, "198.51.100.0/24": 1003, "198.51.100.128/25": 1006,
                "2001:db8:1::/48": 1004}
        ops = [NexthopSet(o, False) for o in objects + groups]
        ops += [RouteSet(key(p), nh, False, RT_SCOPE_LINK) for p, nh in link.items()]
        ops.append(RouteSet(key("203.0.113.0/24"), 1001, False, RT_SCOPE_UNIVERSE))
        assert kernel.apply(ops) == []
        scopes = {}
        routes = kernel.dump_routes(100, PROTO, scopes)
        assert len(routes) == 6
        assert scopes == {key(p): RT_SCOPE_LINK for p in link if ":" not in p}  # IPv6: universe
        assert {format_prefix(r.prefix): r.scope for r in kernel.dump_table(100, PROTO)} == {
            **{p: RT_SCOPE_LINK for p in link}, "2001:db8:1::/48": RT_SCOPE_UNIVERSE, "203.0.113.0/24": RT_SCOPE_UNIVERSE}
        # a replace that changes only the scope
        assert kernel.apply([RouteSet(key("203.0.113.0/24"), 1001, True, RT_SCOPE_LINK),
                             RouteSet(key("192.0.2.0/24"), 1001, True, RT_SCOPE_UNIVERSE)]) == []
        scopes = {}
        kernel.dump_routes(100, PROTO, scopes)
        assert key("203.0.113.0/24") in scopes and key("192.0.2.0/24") not in scopes
        # deletes match whatever the scope
        assert kernel.apply([RouteDel(key(p)) for p in list(link) + ["203.0.113.0/24"]]) == []
        assert kernel.dump_routes(100, PROTO) == {}
    finally:
        kernel.close()
    with pytest.raises(RuntimeError, match="invalid gateway"):
        ns.ip("route", "add", "198.51.100.0/24", "via", "10.0.0.2", "dev", "v0", "scope", "link", "table", "100")
