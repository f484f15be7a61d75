"""The rtnetlink sockets (kernelsync.kernel.netlink) on the real kernel in a namespace."""
import pytest

from kernelsync.core.model import format_prefix
from kernelsync.kernel.codec import ROUTE_MESSAGES, RTM_DELROUTE, RTM_NEWROUTE, parse_route
from kernelsync.kernel.netlink import RouteEventSocket
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
