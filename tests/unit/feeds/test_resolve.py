"""Next-hop resolution (kernelsync.feeds.resolve), pure: link-local, connected, recursive."""
from kernelsync.core.model import AF_INET, AF_INET6, Leg, NexthopSpec
from tests.unit.feeds.bgp_lines import a4, a6, lab_resolver


def test_global_next_hop_preferred_link_local_as_fallback():
    r = lab_resolver()
    assert r.resolve(AF_INET6, (AF_INET6, a6("2001:db8:a::1")), a6("fe80::1"), a4("192.0.2.2")) == \
        (NexthopSpec(a6("2001:db8:a::1"), AF_INET6, "ha"),)
    assert r.resolve(AF_INET6, (AF_INET6, a6("2001:db8:77::1")), a6("fe80::1"), a4("192.0.2.2")) == \
        (NexthopSpec(a6("fe80::1"), AF_INET6, "ha"),)

def test_default_route_resolves_only_when_allowed():
    r = lab_resolver()
    r.route_event(False, AF_INET, a4("0.0.0.0"), 0, 0, (Leg(AF_INET, a4("192.0.2.1"), 4),))
    assert r.resolve(AF_INET, (AF_INET, a4("172.16.5.5")), None, None) is None
    r.via_default = True
    assert r.resolve(AF_INET, (AF_INET, a4("172.16.5.5")), None, None) == (NexthopSpec(a4("192.0.2.1"), AF_INET, "ha"),)

def test_own_address_and_ipv6_over_ipv4_do_not_resolve():
    r = lab_resolver()
    assert r.resolve(AF_INET, (AF_INET, a4("192.0.2.2")), None, None) is None
    assert r.resolve(AF_INET6, (AF_INET, a4("192.0.2.1")), None, None) is None
    # RFC 8950: an IPv4 route over an IPv6 next hop
    assert r.resolve(AF_INET, (AF_INET6, a6("2001:db8:a::1")), None, None) == \
        (NexthopSpec(a6("2001:db8:a::1"), AF_INET6, "ha"),)

