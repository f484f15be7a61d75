"""The BGP core without a kernel: ExaBGP JSON (golden captures of 5.0 and 4.2), Adj-RIB-In,
decision and multipath, stale and refresh windows, readiness, next-hop resolution."""
import json
import os
import socket

import pytest

from kernelsync.bgp import EBGP, IBGP, BgpRib, BgpSettings
from kernelsync.exabgp import (Ack, EndOfRib, FeedError, Parser, PeerState, Refresh, Shutdown, Update)
from kernelsync.model import AF_INET, AF_INET6, NexthopSpec, parse_prefix
from kernelsync.resolve import Resolver
from kernelsync.rib import Rib

DATA = os.path.join(os.path.dirname(__file__), "data")
V4 = parse_prefix("198.51.100.0/24")
V4B = parse_prefix("203.0.113.0/25")
V6 = parse_prefix("2001:db8:100::/48")


def a4(text):
    return socket.inet_pton(AF_INET, text)


def a6(text):
    return socket.inet_pton(AF_INET6, text)


def lab_resolver():
    """The lab's host: ha 192.0.2.2/29 + 2001:db8:a::2/64, hb 192.0.2.10/29 + 2001:db8:b::2/64."""
    r = Resolver()
    r.set_links({4: "ha", 5: "hb", 6: "up"})
    r.set_addresses([(AF_INET, 4, a4("192.0.2.2"), 29), (AF_INET, 5, a4("192.0.2.10"), 29),
                     (AF_INET6, 4, a6("2001:db8:a::2"), 64), (AF_INET6, 5, a6("2001:db8:b::2"), 64),
                     (AF_INET, 6, a4("10.9.0.1"), 24)])
    return r


def msg(kind, body, peer="192.0.2.1", local="192.0.2.2", peer_as=65001, local_as=65010):
    nb = {"address": {"local": local, "peer": peer}, "asn": {"local": local_as, "peer": peer_as}}
    nb.update(body)
    return json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": nb})


def announce(nlris, nexthop, family="ipv4 unicast", attrs=None, withdraw=None, **kw):
    update = {"attribute": attrs or {"origin": "igp", "as-path": {"0": {"element": "as-sequence",
                                                                        "value": [kw.get("peer_as", 65001)]}}}}
    if nlris:
        update["announce"] = {family: {nexthop: [n if isinstance(n, dict) else {"nlri": n} for n in nlris]}}
    if withdraw:
        update["withdraw"] = {family: [{"nlri": w} for w in withdraw]}
    return msg("update", {"direction": "receive", "message": {"update": update}}, **kw)


class Feed:
    """Parser + BgpRib on a plain RIB, with the lab's resolver."""

    def __init__(self, **settings):
        self.rib = Rib()
        self.parser = Parser()
        self.resolver = lab_resolver()
        self.bgp = BgpRib(self.rib, self.resolver, BgpSettings(**settings), now=0.0)

    def lines(self, *lines, now=0.0):
        for line in lines:
            event = self.parser.parse(line)
            if event is not None:
                self.bgp.handle(event, now)
        self.bgp.commit()

    def nexthops(self, prefix, source=None):
        entry = self.rib.entries.get(prefix, {})
        if not entry:
            return None
        (src, paths), = entry.items()
        assert source is None or src == source
        return sorted((socket.inet_ntop(n.gw_family, n.gateway), n.dev) for p in paths for n in p.nexthops)


# golden captures ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_golden_capture_parses_completely(version):
    parser = Parser()
    kinds = {}
    for line in open(os.path.join(DATA, "exabgp-%s.jsonl" % version)):
        event = parser.parse(line)
        kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
    # states (connected/up/down), updates, EORs (2 peers x 2 families + hB again), refresh
    # begin/end per peer, the ack of our route-refresh command, ExaBGP's shutdown
    assert kinds == {"PeerState": 11, "Update": 10, "EndOfRib": 6, "Refresh": 4, "Ack": 1, "Shutdown": 1,
                     "NoneType": 1}  # the peer's NOTIFICATION before its down


@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_golden_replay_builds_ecmp_and_keeps_it_stale_through_exabgp_shutdown(version):
    feed = Feed(restart_hold_time=60)
    lines = open(os.path.join(DATA, "exabgp-%s.jsonl" % version)).read().splitlines()
    first_eor = [i for i, l in enumerate(lines) if '"eor"' in l][3]  # both peers, both families
    feed.lines(*lines[:first_eor + 1])
    assert feed.nexthops(V4, EBGP) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
    assert feed.nexthops(V4B, EBGP) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
    # the IPv6 NLRI came under the global and the fe80:: next hop: counted once per peer
    assert feed.nexthops(V6, EBGP) == [("2001:db8:a::1", "ha"), ("2001:db8:b::1", "hb")]
    assert len(feed.bgp.by_prefix[V6]) == 2
    withdraw_at = [i for i, l in enumerate(lines) if '"withdraw"' in l][-1]
    feed.lines(*lines[first_eor + 1:withdraw_at + 1])
    assert feed.nexthops(V4B) is None  # withdrawn by both peers
    assert feed.nexthops(V4) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
    feed.lines(*lines[withdraw_at + 1:], now=10.0)
    # ExaBGP stopped ("shutting down"): our own speaker restarts, the FIB keeps forwarding
    assert feed.nexthops(V4) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
    assert all(p.stale for peer in feed.bgp.peers.values() for p in peer.paths.values())
    feed.bgp.tick(69.9)
    feed.bgp.commit()
    assert feed.nexthops(V4) is not None
    feed.bgp.tick(70.0)
    feed.bgp.commit()
    assert feed.rib.entries == {}  # not back within restart_hold_time: flushed


def test_refresh_42_invalid_json_is_repaired():
    line = ('{ "exabgp": "4.0.1", "type": "refresh", "neighbor": { "address": { "local": "192.0.2.2", '
            '"peer": "192.0.2.1" }, "asn": { "local": 65010, "peer": 65001 } , "direction": "receive", '
            '"route-refresh": { "afi": ""ipv4"", "safi": ""unicast"", "subtype": ""begin"" } } }')
    event = Parser().parse(line)
    assert isinstance(event, Refresh) and event.family == "ipv4 unicast" and event.subtype == "begin"


def test_as_path_42_and_50_shapes():
    p = Parser()
    e50 = p.parse(announce(["198.51.100.0/24"], "192.0.2.1", attrs={
        "as-path": {"0": {"element": "as-sequence", "value": [65001, 64512]},
                    "1": {"element": "as-set", "value": [1, 2, 3]}}}))
    assert e50.attrs.as_path_len == 3 and e50.attrs.neighbour_as == 65001
    e42 = p.parse(announce(["198.51.100.0/24"], "192.0.2.1",
                           attrs={"as-path": [65001, 64512], "confederation-path": []}))
    assert e42.attrs.as_path == (65001, 64512) and e42.attrs.as_path_len == 2


@pytest.mark.parametrize("line, problem", [
    ("not json at all", "not JSON"),
    ('{"type": "update", "neighbor": ', "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"type": "surprise"}', "unknown message type"),
    (announce(["198.51.100.0/24"], "192.0.2.1", attrs={"origin": "igp", "med": "high"}), "med"),
    (announce(["198.51.100.0/33"], "192.0.2.1"), "not a prefix"),
    (announce(["198.51.100.1/24"], "192.0.2.1"), "host bits"),
    (announce(["2001:db8::/32"], "192.0.2.1"), "does not belong"),
    (announce(["198.51.100.0/24"], "not-an-address"), "not an IP address"),
    (msg("state", {"state": 7}), "not a string"),
    (msg("update", {"direction": "receive", "message": {"update": {"announce": []}}}), "update message"),
    (msg("update", {"direction": "receive", "message": {"update": {"announce": {"ipv4 unicast": {
        "192.0.2.1": [{"nlri": "198.51.100.0/24", "path-information": "x.y"}]}}}}}), "path-information"),
])
def test_bad_lines_raise_feed_error(line, problem):
    with pytest.raises(FeedError, match=problem):
        Parser().parse(line)


def test_shapes_beside_the_common_one_parse_alike():
    # the parser has a fast path for one next hop and one AS_SEQUENCE; these take the other way
    p = Parser()
    twice = p.parse(announce(["198.51.100.0/24", "203.0.113.0/25", "198.51.100.0/24"], "192.0.2.1"))
    assert [a.prefix for a in twice.announce] == [V4, V4B]  # an NLRI listed twice counts once
    ll = p.parse(announce(["2001:db8:100::/48", "2001:db8:100::/48"], "fe80::1", family="ipv6 unicast"))
    assert len(ll.announce) == 1 and ll.announce[0].nexthop == (AF_INET6, a6("fe80::1"))
    compact = p.parse(announce(["198.51.100.0/24", {"nlri": "203.0.113.0/25", "path-information": 7}],
                               "192.0.2.1"))
    assert [(a.prefix, a.path_id) for a in compact.announce] == [(V4, 0), (V4B, 7)]
    aset = p.parse(announce(["198.51.100.0/24"], "192.0.2.1", attrs={
        "as-path": {"0": {"element": "as-set", "value": [65001, 65002]}}}))
    assert aset.attrs.as_path == (65001, 65002) and aset.attrs.as_path_len == 1
    for bad in (True, 65001.0, -1, 1 << 32):
        with pytest.raises(FeedError, match="as-path segment"):
            p.parse(announce(["198.51.100.0/24"], "192.0.2.1", attrs={
                "as-path": {"0": {"element": "as-sequence", "value": [bad]}}}))
    with pytest.raises(FeedError, match="not JSON"):
        p.parse(announce(["198.51.100.0/24"], "192.0.2.1") + " {}")  # two documents


def test_unknown_family_is_skipped_rest_used():
    update = {"attribute": {"origin": "igp"}, "announce": {
        "ipv4 flow": {"no-nexthop": [{"destination-ipv4": ["10.0.0.0/8"]}]},
        "ipv4 unicast": {"192.0.2.1": [{"nlri": "198.51.100.0/24"}]}}}
    event = Parser().parse(msg("update", {"direction": "receive", "message": {"update": update}}))
    assert event.skipped == ("ipv4 flow",) and [a.prefix for a in event.announce] == [V4]


def test_acks_and_shutdown():
    p = Parser()
    assert p.parse("done") == Ack(True, "done") and p.parse("error") == Ack(False, "error")
    assert isinstance(p.parse('{"exabgp": "5.0.0", "type": "notification", "notification": "shutdown"}'), Shutdown)


# Adj-RIB-In and decision -------------------------------------------------------------------
def test_add_path_two_ids_from_one_peer_and_withdraw_by_id():
    feed = Feed()
    feed.lines(announce([{"nlri": "198.51.100.0/24", "path-information": "0.0.0.1"}], "192.0.2.1"),
               announce([{"nlri": "198.51.100.0/24", "path-information": "0.0.0.2"}], "192.0.2.3"))
    assert feed.nexthops(V4) == [("192.0.2.1", "ha"), ("192.0.2.3", "ha")]
    update = {"withdraw": {"ipv4 unicast": [{"nlri": "198.51.100.0/24", "path-information": "0.0.0.1"}]}}
    feed.lines(msg("update", {"direction": "receive", "message": {"update": update}}))
    assert feed.nexthops(V4) == [("192.0.2.3", "ha")]


def test_without_add_path_a_new_announce_replaces():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"), announce(["198.51.100.0/24"], "192.0.2.3"))
    assert feed.nexthops(V4) == [("192.0.2.3", "ha")]


def test_announce_and_withdraw_in_one_update():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"))
    feed.lines(announce(["203.0.113.0/25"], "192.0.2.1", withdraw=["198.51.100.0/24"]))
    assert feed.nexthops(V4) is None and feed.nexthops(V4B) == [("192.0.2.1", "ha")]


def path(lp=None, aspath=(65001,), origin="igp", med=None):
    attrs = {"origin": origin, "as-path": {"0": {"element": "as-sequence", "value": list(aspath)}}}
    if lp is not None:
        attrs["local-preference"] = lp
    if med is not None:
        attrs["med"] = med
    return attrs


B = dict(peer="192.0.2.9", local="192.0.2.10")


@pytest.mark.parametrize("a, b, winner", [
    (path(lp=200), path(lp=100), "a"),
    (path(aspath=(65001,)), path(aspath=(65001, 65002)), "a"),
    (path(origin="incomplete"), path(origin="igp"), "b"),
    (path(med=10), path(med=5), "b"),
    (path(med=10), path(med=10), "both"),
    (path(), path(), "both"),
])
def test_decision_steps(a, b, winner):
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1", attrs=a),
               announce(["198.51.100.0/24"], "192.0.2.9", attrs=b, **B))
    expected = {"a": [("192.0.2.1", "ha")], "b": [("192.0.2.9", "hb")],
                "both": [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]}[winner]
    assert feed.nexthops(V4) == expected


def test_med_compared_only_within_the_same_neighbour_as():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1", attrs=path(aspath=(65001,), med=100)),
               announce(["198.51.100.0/24"], "192.0.2.9", attrs=path(aspath=(65002,), med=1), peer_as=65002, **B))
    assert feed.nexthops(V4) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]  # different neighbour AS


def test_ebgp_over_ibgp_and_sources():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.9", attrs=path(aspath=()), peer_as=65010, **B))
    assert feed.nexthops(V4, IBGP) == [("192.0.2.9", "hb")]
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1", attrs=path(aspath=())))
    assert feed.nexthops(V4, EBGP) == [("192.0.2.1", "ha")]  # moved from ibgp to ebgp
    assert IBGP not in feed.rib.entries[V4]


def test_own_as_in_path_is_dropped_and_removes_the_earlier_path():
    feed = Feed(local_asns=(64999,))
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"))
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1", attrs=path(aspath=(65001, 65010))))
    assert feed.nexthops(V4) is None and feed.bgp.counters["looped"] == 1
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1", attrs=path(aspath=(65001, 64999))))
    assert feed.nexthops(V4) is None and feed.bgp.counters["looped"] == 2


def test_down_flushes_without_graceful_restart():
    feed = Feed()
    feed.lines(msg("state", {"state": "up"}), announce(["198.51.100.0/24"], "192.0.2.1"))
    feed.lines(msg("state", {"state": "down", "reason": "hold timer"}))
    assert feed.nexthops(V4) is None


def test_graceful_restart_keeps_stale_until_eor_sweeps():
    feed = Feed(graceful_restart=30)
    feed.lines(msg("state", {"state": "up"}), announce(["198.51.100.0/24", "203.0.113.0/25"], "192.0.2.1"))
    feed.lines(msg("state", {"state": "down"}), now=1.0)
    assert feed.nexthops(V4) == [("192.0.2.1", "ha")]  # kept, stale
    feed.lines(msg("state", {"state": "up"}), announce(["198.51.100.0/24"], "192.0.2.1"), now=2.0)
    eor = msg("update", {"direction": "receive", "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}})
    feed.lines(eor, now=3.0)
    assert feed.nexthops(V4) == [("192.0.2.1", "ha")] and feed.nexthops(V4B) is None


def test_graceful_restart_time_runs_out():
    feed = Feed(graceful_restart=30)
    feed.lines(msg("state", {"state": "up"}), announce(["198.51.100.0/24"], "192.0.2.1"))
    feed.lines(msg("state", {"state": "down"}), now=1.0)
    feed.bgp.tick(2.0)  # startup_wait over: ready
    assert feed.bgp.ready and feed.bgp.deadline() == 31.0
    feed.bgp.tick(30.9)
    feed.bgp.commit()
    assert feed.nexthops(V4) is not None
    feed.bgp.tick(31.0)
    feed.bgp.commit()
    assert feed.nexthops(V4) is None


def test_refresh_window_is_mark_and_sweep_per_family():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24", "203.0.113.0/25"], "192.0.2.1"),
               announce(["2001:db8:100::/48"], "2001:db8:a::1", family="ipv6 unicast"))
    rr = lambda sub: msg("refresh", {"direction": "receive", "route-refresh": {"afi": "ipv4", "safi": "unicast",
                                                                                "subtype": sub}})
    feed.lines(rr("begin"), announce(["198.51.100.0/24"], "192.0.2.1"))
    assert feed.nexthops(V4B) is not None  # still there during the window
    feed.lines(rr("end"))
    assert feed.nexthops(V4B) is None and feed.nexthops(V4) and feed.nexthops(V6)


def test_ready_after_startup_wait_and_every_eor():
    feed = Feed(startup_wait=2, eor_timeout=10)
    feed.lines(msg("state", {"state": "up"}))
    feed.bgp.tick(5.0)
    assert not feed.bgp.ready and not feed.rib.all_ready  # waiting for both families' EOR
    for afi in ("ipv4", "ipv6"):
        feed.lines(msg("update", {"direction": "receive", "message": {"eor": {"afi": afi, "safi": "unicast"}}}))
    feed.bgp.tick(5.0)
    assert feed.bgp.ready and feed.rib.all_ready


def test_no_deadline_in_the_past_while_waiting_for_end_of_rib():
    # the event loop runs whatever is due at once: a past deadline would make it spin
    feed = Feed(startup_wait=2, eor_timeout=10)
    feed.lines(msg("state", {"state": "up"}))
    assert feed.bgp.deadline() == 2.0
    feed.bgp.tick(5.0)
    assert not feed.bgp.ready and feed.bgp.deadline() == 10.0  # the end-of-RIB timeout
    for afi in ("ipv4", "ipv6"):
        feed.lines(msg("update", {"direction": "receive", "message": {"eor": {"afi": afi, "safi": "unicast"}}}))
    assert feed.bgp.deadline() <= 5.0  # due now: readiness
    feed.bgp.tick(5.0)
    assert feed.bgp.ready and feed.bgp.deadline() is None


def test_eor_timeout_makes_ready():
    feed = Feed(startup_wait=1, eor_timeout=4)
    feed.lines(msg("state", {"state": "up"}))
    feed.bgp.tick(3.9)
    assert not feed.bgp.ready
    feed.bgp.tick(4.0)
    assert feed.bgp.ready


# resolution --------------------------------------------------------------------------------
def test_link_local_next_hop_uses_the_session_device():
    feed = Feed()
    feed.lines(announce(["2001:db8:100::/48"], "fe80::1", family="ipv6 unicast", **B))
    assert feed.nexthops(V6) == [("fe80::1", "hb")]


def test_global_next_hop_preferred_link_local_as_fallback():
    r = lab_resolver()
    assert r.resolve(AF_INET6, (AF_INET6, a6("2001:db8:a::1")), a6("fe80::1"), a4("192.0.2.2")) == \
        (NexthopSpec(a6("2001:db8:a::1"), AF_INET6, "ha"),)
    assert r.resolve(AF_INET6, (AF_INET6, a6("2001:db8:77::1")), a6("fe80::1"), a4("192.0.2.2")) == \
        (NexthopSpec(a6("fe80::1"), AF_INET6, "ha"),)


def test_recursive_resolution_and_re_resolution():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "172.16.5.5"))
    assert feed.nexthops(V4) is None  # unresolvable: not used
    feed.resolver.route_event(False, AF_INET, a4("172.16.0.0"), 16, 0,
                              ((AF_INET, a4("192.0.2.1"), 4), (AF_INET, a4("192.0.2.9"), 5)))
    feed.bgp.commit()
    assert feed.nexthops(V4) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
    feed.resolver.route_event(False, AF_INET, a4("172.16.5.0"), 24, 0, ((None, None, 6),))  # more specific, dev only
    feed.bgp.commit()
    assert feed.nexthops(V4) == [("172.16.5.5", "up")]
    feed.resolver.route_event(True, AF_INET, a4("172.16.5.0"), 24, 0, ())
    feed.resolver.route_event(True, AF_INET, a4("172.16.0.0"), 16, 0, ())
    feed.bgp.commit()
    assert feed.nexthops(V4) is None


def test_default_route_resolves_only_when_allowed():
    r = lab_resolver()
    r.route_event(False, AF_INET, a4("0.0.0.0"), 0, 0, ((AF_INET, a4("192.0.2.1"), 4),))
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


def test_address_change_re_resolves():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"))
    assert feed.nexthops(V4) == [("192.0.2.1", "ha")]
    feed.resolver.set_addresses([(AF_INET, 5, a4("192.0.2.10"), 29)])  # ha lost its address
    feed.bgp.commit()
    assert feed.nexthops(V4) is None
