"""A BGP next hop stops resolving through a route that a blackhole, unreachable or prohibit
route replaced (or covers more specifically), from notifications and from a full read (issue
12, defect 9a)."""
import pytest

from kernelsync.core.model import AF_INET, KRoute, Leg, parse_prefix
from kernelsync.feeds.base import KernelChange, RouteEvent
from tests.unit.feeds.bgp_lines import announce
from tests.unit.feeds.test_bgpfeed import A4, V4, make, nexthops

RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT = 6, 7, 8


def unicast(text, gateway="192.0.2.1", metric=0):
    family, dst, plen = parse_prefix(text)
    return KRoute(family, dst, plen, 254, 12, 1, metric, (Leg(AF_INET, A4(gateway), 4),), 0)


@pytest.mark.parametrize("rtype", [RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT])
def test_a_route_replaced_by_a_blackhole_no_longer_resolves(rtype):
    feed, rib, _kernel, _streams, channel = make()
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "172.16.5.5").encode()], 0.0)
    route = unicast("172.16.0.0/16")
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, route),)), 1.0)
    feed.commit(1.0)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")]
    # ip route replace blackhole 172.16.0.0/16: RTM_NEWROUTE of type blackhole, no legs, same key
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, route._replace(type=rtype, legs=())),)), 2.0)
    feed.commit(2.0)
    assert nexthops(rib, V4) is None
    # ip route replace 172.16.0.0/16 via 192.0.2.1 (unicast again)
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, route),)), 3.0)
    feed.commit(3.0)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")]
    # a more specific blackhole covers the next hop; deleting it brings the /16 back
    hole = unicast("172.16.5.0/24")._replace(type=rtype, legs=())
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(False, hole),)), 4.0)
    feed.commit(4.0)
    assert nexthops(rib, V4) is None
    feed.on_kernel_change(KernelChange(routes=(RouteEvent(True, hole),)), 5.0)
    feed.commit(5.0)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")]


def test_a_full_read_sees_the_blackhole_too():
    route = unicast("172.16.0.0/16")
    feed, rib, kernel, _streams, channel = make(routes=[route, unicast("172.16.5.0/24")._replace(
        type=RTN_BLACKHOLE, legs=())])
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "172.16.5.5").encode(),
                            announce(["198.51.100.128/25"], "172.16.6.6").encode()], 0.0)
    feed.commit(1.0)
    assert nexthops(rib, V4) is None  # behind the blackhole /24
    assert nexthops(rib, parse_prefix("198.51.100.128/25")) == [("192.0.2.1", "ha")]  # beside it
