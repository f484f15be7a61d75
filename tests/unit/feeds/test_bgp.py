"""BGP's Adj-RIB-In, decision and multipath (kernelsync.feeds.bgp), pure: into a plain RIB, with
the lab host's resolver; stale and refresh windows, readiness."""
import os
import socket

import pytest

from kernelsync.core.model import AF_INET, IfAddress, Leg
from kernelsync.core.rib import Rib
from kernelsync.feeds.bgp import EBGP, IBGP, BgpRib, BgpSettings
from kernelsync.feeds.exabgp import Parser
from tests.unit.feeds.bgp_lines import CAPTURES, V4, V4B, V6, B, a4, announce, lab_resolver, msg


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
        entry = self.rib.entries.get(prefix, ())
        if not entry:
            return None
        (src, paths), = entry
        assert source is None or src == source
        return sorted((socket.inet_ntop(n.gw_family, n.gateway), n.dev) for p in paths for n in p.nexthops)


@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_golden_replay_builds_ecmp_and_keeps_it_stale_through_exabgp_shutdown(version):
    feed = Feed(restart_hold_time=60)
    lines = open(os.path.join(CAPTURES, "exabgp-%s.jsonl" % version)).read().splitlines()
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
    assert IBGP not in feed.rib.sources(V4)


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


def test_a_peer_back_and_re_sending_keeps_its_stale_paths_past_the_stale_time_until_its_eor():
    """RFC 4724 4.2: once the session is back, the stale routes stay until the end-of-RIB (or the
    end of the wait for it); the graceful-restart timer no longer sweeps them: a full table
    re-learnt over minutes would otherwise lose every prefix not re-sent yet."""
    feed = Feed(graceful_restart=30, eor_timeout=10)
    feed.lines(msg("state", {"state": "up"}), announce(["198.51.100.0/24", "203.0.113.0/25"], "192.0.2.1"))
    feed.lines(msg("state", {"state": "down"}), now=1.0)
    feed.lines(msg("state", {"state": "up"}), now=20.0)
    for t in (25.0, 30.0, 35.0):  # still sending (other prefixes): the wait follows it
        feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"), now=t)
        feed.bgp.tick(t)
        feed.bgp.commit()
    assert feed.nexthops(V4B) == [("192.0.2.1", "ha")]  # past the 31 s stale time: kept, not re-sent yet
    eor = msg("update", {"direction": "receive", "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}})
    feed.lines(eor, now=36.0)
    assert feed.nexthops(V4) == [("192.0.2.1", "ha")] and feed.nexthops(V4B) is None  # swept at the EOR


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


def test_link_local_next_hop_uses_the_session_device():
    feed = Feed()
    feed.lines(announce(["2001:db8:100::/48"], "fe80::1", family="ipv6 unicast", **B))
    assert feed.nexthops(V6) == [("fe80::1", "hb")]


def test_recursive_resolution_and_re_resolution():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "172.16.5.5"))
    assert feed.nexthops(V4) is None  # unresolvable: not used
    feed.resolver.route_event(False, AF_INET, a4("172.16.0.0"), 16, 0,
                              (Leg(AF_INET, a4("192.0.2.1"), 4), Leg(AF_INET, a4("192.0.2.9"), 5)))
    feed.bgp.commit()
    assert feed.nexthops(V4) == [("192.0.2.1", "ha"), ("192.0.2.9", "hb")]
    feed.resolver.route_event(False, AF_INET, a4("172.16.5.0"), 24, 0, (Leg(None, None, 6),))  # more specific, dev only
    feed.bgp.commit()
    assert feed.nexthops(V4) == [("172.16.5.5", "up")]
    feed.resolver.route_event(True, AF_INET, a4("172.16.5.0"), 24, 0, ())
    feed.resolver.route_event(True, AF_INET, a4("172.16.0.0"), 16, 0, ())
    feed.bgp.commit()
    assert feed.nexthops(V4) is None


def test_address_change_re_resolves():
    feed = Feed()
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"))
    assert feed.nexthops(V4) == [("192.0.2.1", "ha")]
    feed.resolver.set_addresses([IfAddress(AF_INET, 5, a4("192.0.2.10"), 29)])  # ha lost its address
    feed.bgp.commit()
    assert feed.nexthops(V4) is None



def _eor(afi, **peer):
    return msg("update", {"direction": "receive", "message": {"eor": {"afi": afi, "safi": "unicast"}}}, **peer)


def _prefixes(n, base=0):
    return ["10.%d.%d.0/24" % divmod(base + i, 256) for i in range(n)]


def test_eor_wait_follows_a_slow_peer_and_sweeps_nothing_it_sent():
    # a full table re-sent slowly (ExaBGP passes one-prefix UPDATEs at ~5,000/s: 130,000 take
    # ~40 s): the graceful-restart stale paths must not be swept while the peer still sends
    feed = Feed(graceful_restart=120, startup_wait=1, eor_timeout=10)
    table = _prefixes(300)
    feed.lines(msg("state", {"state": "up"}), *(announce([p], "192.0.2.1") for p in table))
    feed.lines(_eor("ipv4"), _eor("ipv6"))
    feed.lines(msg("state", {"state": "down", "reason": "hold timer"}), now=1.0)
    feed.lines(msg("state", {"state": "up"}), now=2.0)
    for i, prefix in enumerate(table):  # one UPDATE every 0.2 s: 60 s, far past eor_timeout
        now = 2.0 + 0.2 * i
        feed.bgp.tick(now)
        feed.lines(announce([prefix], "192.0.2.1"), now=now)
    assert "ipv4 unicast" in feed.bgp.peers["192.0.2.1"].pending
    assert feed.bgp.counters["stale_swept"] == 0 and feed.bgp.counters["eor_timeouts"] == 1  # ipv6: silent
    assert len(feed.bgp.by_prefix) == 300
    feed.lines(_eor("ipv4"), now=62.0)
    assert feed.bgp.counters["stale_swept"] == 0 and len(feed.bgp.by_prefix) == 300
    assert not feed.bgp.peers["192.0.2.1"].pending


def test_eor_wait_gives_up_after_silence_of_that_family():
    feed = Feed(graceful_restart=120, startup_wait=1, eor_timeout=10)
    feed.lines(msg("state", {"state": "up"}), announce(_prefixes(2), "192.0.2.1"), _eor("ipv4"), _eor("ipv6"))
    feed.lines(msg("state", {"state": "down", "reason": "hold timer"}), now=1.0)
    feed.lines(msg("state", {"state": "up"}), now=2.0)
    feed.lines(announce(_prefixes(1), "192.0.2.1"), now=5.0)  # 10.0.1.0/24 not re-sent
    feed.lines(announce(["2001:db8:100::/48"], "2001:db8:a::1", family="ipv6 unicast"), now=9.0)
    peer = feed.bgp.peers["192.0.2.1"]
    assert feed.bgp.wait_ends(peer, "ipv4 unicast") == 15.0  # IPv6 traffic does not extend IPv4
    assert feed.bgp.wait_ends(peer, "ipv6 unicast") == 19.0
    feed.bgp.tick(9.0)
    assert feed.bgp.deadline() == 15.0
    feed.bgp.tick(14.9)
    assert len(feed.bgp.by_prefix) == 3
    feed.bgp.tick(15.0)
    feed.bgp.commit()
    assert "10.0.1.0/24" not in {"%s" % (p,) for p in feed.bgp.by_prefix} and len(feed.bgp.by_prefix) == 2
    assert list(peer.pending) == ["ipv6 unicast"] and feed.bgp.counters["stale_swept"] == 1


def test_eor_wait_has_an_upper_bound():
    feed = Feed(startup_wait=0, eor_timeout=10, eor_max_wait=60)
    feed.lines(msg("state", {"state": "up"}), _eor("ipv6"))
    now = 0.0
    while now < 59.5:  # a peer that never stops sending and never sends its end-of-RIB
        feed.lines(announce(_prefixes(1, base=int(now)), "192.0.2.1"), now=now)
        feed.bgp.tick(now)
        assert feed.bgp.deadline() == min(60.0, now + 10.0)
        assert not feed.bgp.ready
        now += 0.5
    feed.bgp.tick(60.0)
    assert feed.bgp.ready and feed.bgp.counters["eor_timeouts"] == 1


def test_refresh_window_follows_progress():
    feed = Feed(startup_wait=0, eor_timeout=10)
    feed.lines(announce(_prefixes(50), "192.0.2.1"), _eor("ipv4"), _eor("ipv6"))
    rr = lambda sub: msg("refresh", {"direction": "receive", "route-refresh": {"afi": "ipv4", "safi": "unicast",
                                                                                "subtype": sub}})
    feed.lines(rr("begin"), now=100.0)
    for i, prefix in enumerate(_prefixes(50)):
        now = 100.0 + i
        feed.bgp.tick(now)
        feed.lines(announce([prefix], "192.0.2.1"), now=now)
    feed.lines(rr("end"), now=150.0)
    assert feed.bgp.counters["stale_swept"] == 0 and len(feed.bgp.by_prefix) == 50


def test_after_a_restart_a_peer_first_heard_waits_for_its_refresh():
    # respawned: peers are unknown; one heard from by an UPDATE (churn) before its refresh
    # "begin" must not let readiness come at restart_wait, with the RIB half rebuilt
    rib = Rib()
    bgp = BgpRib(rib, lab_resolver(), BgpSettings(startup_wait=1, restart_wait=3, eor_timeout=10), 0.0,
                 restart=True)
    parser = Parser()
    bgp.stream_opened(0.0)  # ExaBGP's stream (stdin, or a relay) and our route-refresh request
    for line in [announce(["198.51.100.0/24"], "192.0.2.1")]:
        bgp.handle(parser.parse(line), 0.5)
    bgp.tick(3.0)
    assert not bgp.ready and sorted(bgp.peers["192.0.2.1"].pending) == ["ipv4 unicast", "ipv6 unicast"]
    for sub in ("begin", "end"):
        for afi in ("ipv4", "ipv6"):
            bgp.handle(parser.parse(msg("refresh", {"direction": "receive", "route-refresh": {
                "afi": afi, "safi": "unicast", "subtype": sub}})), 4.0)
    bgp.tick(4.0)
    assert bgp.ready


def test_paths_from_a_new_stream_are_held_again_when_that_stream_is_lost():
    # relay lost, back (its peers send again), lost again: the paths must be held stale for
    # restart_hold_time again, not kept for ever under a peer still marked down
    feed = Feed(restart_hold_time=60)
    first, second = object(), object()
    for line in (msg("state", {"state": "up"}), announce(["198.51.100.0/24"], "192.0.2.1")):
        feed.bgp.handle(feed.parser.parse(line), 0.0, first)
    feed.bgp.channel_closed(first, 1.0)
    rr = lambda sub: msg("refresh", {"direction": "receive", "route-refresh": {"afi": "ipv4", "safi": "unicast",
                                                                                "subtype": sub}})
    for line in (rr("begin"), announce(["198.51.100.0/24"], "192.0.2.1"), rr("end")):
        feed.bgp.handle(feed.parser.parse(line), 2.0, second)
    peer = feed.bgp.peers["192.0.2.1"]
    assert peer.state == "up" and not any(p.stale for p in peer.paths.values())
    feed.bgp.channel_closed(second, 10.0)
    assert peer.state == "down" and peer.stale_until == 70.0
    feed.bgp.tick(70.0)
    feed.bgp.commit()
    assert feed.nexthops(V4) is None


def test_restart_race_a_peer_answers_one_family_late():
    # the small-lab race (captured order after a respawn, ADD-PATH): both peers answer the
    # IPv4 refresh at once, but BIRD begins 192.0.2.9's IPv6 refresh 1.3 s later.  Readiness
    # came at restart_wait with that peer's IPv6 path missing, so the reconcile took it out
    # of the kernel's group (route moved to the other peer's nexthop and back).
    rib = Rib()
    bgp = BgpRib(rib, lab_resolver(), BgpSettings(startup_wait=1, restart_wait=2, eor_timeout=10), 0.0,
                 restart=True)
    parser = Parser()
    rr = lambda afi, sub, **peer: msg("refresh", {"direction": "receive", "route-refresh": {
        "afi": afi, "safi": "unicast", "subtype": sub}}, **peer)
    v6 = lambda nh, **peer: announce([{"nlri": "2001:db8:100::/48", "path-information": "0.0.0.3"}], nh,
                                     family="ipv6 unicast", **peer)
    v4 = lambda nh, **peer: announce([{"nlri": "198.51.100.0/24", "path-information": "0.0.0.2"}], nh, **peer)
    events = [(1.0, rr("ipv4", "begin")), (1.0, v4("192.0.2.1")), (1.0, rr("ipv4", "end")),
              (1.0, rr("ipv6", "begin")), (1.0, v6("2001:db8:a::1")), (1.0, rr("ipv6", "end")),
              (1.0, rr("ipv4", "begin", **B)), (1.0, v4("192.0.2.9", **B)), (1.0, rr("ipv4", "end", **B)),
              (2.3, rr("ipv6", "begin", **B)), (2.3, v6("2001:db8:b::1", **B)), (2.3, rr("ipv6", "end", **B))]
    bgp.stream_opened(0.0)
    for when, line in events:
        if not bgp.ready:
            bgp.tick(when)
        if bgp.ready:
            break
        bgp.handle(parser.parse(line), when)
    bgp.tick(2.3)
    assert bgp.ready
    bgp.commit()
    assert len(bgp.by_prefix[V6]) == 2, "ready before 192.0.2.9 re-sent its IPv6 path"


def test_dropped_updates_leave_their_paths_stale_until_a_plain_refresh_re_sends_them():
    """UPDATEs of one peer and family were dropped (the stdin queue was full), a withdraw among
    them.  A peer with plain route-refresh (RFC 2918) re-sends its routes without begin/end:
    what it does not re-send must still go when the stale time is over, and nothing else."""
    feed = Feed(restart_hold_time=60)
    feed.lines(announce(["198.51.100.0/24", "203.0.113.0/25"], "192.0.2.1"),
               announce(["2001:db8:100::/48"], "2001:db8:a::1", family="ipv6 unicast"))
    feed.bgp.lines_lost(None, 1.0, {"192.0.2.1": {"ipv4 unicast"}})  # 203.0.113.0/25's withdraw was lost
    feed.lines(announce(["198.51.100.0/24"], "192.0.2.1"), now=2.0)  # the refresh: no begin, no end
    feed.bgp.tick(60.9)
    feed.bgp.commit()
    assert feed.nexthops(V4B) is not None  # held stale meanwhile
    feed.bgp.tick(61.0)
    feed.bgp.commit()
    assert feed.nexthops(V4B) is None and feed.nexthops(V4) and feed.nexthops(V6)


def test_a_peer_waiting_for_its_end_of_rib_holds_the_growth_of_its_source():
    """PIC when a peer comes back: the RIB's growth hold of ``ebgp`` lasts while any eBGP peer
    waits for an end-of-RIB (at most eor_max_wait after the wait began), and is released only
    once what the peer sent before its end-of-RIB is committed to the RIB."""
    feed = Feed(eor_max_wait=300)
    rib = feed.rib
    feed.lines(msg("state", {"state": "up"}), msg("state", {"state": "up"}, **B), now=5.0)
    assert rib.growth_holds == {EBGP: 305.0}
    feed.lines(_eor("ipv4"), _eor("ipv6"), _eor("ipv4", **B), now=6.0)
    assert rib.growth_holds == {EBGP: 305.0}  # B still waits for its IPv6 end-of-RIB
    # B's last UPDATE and its end-of-RIB in one read: the release waits for the commit
    for line in (announce(["198.51.100.0/24"], "192.0.2.9", **B), _eor("ipv6", **B)):
        feed.bgp.handle(feed.parser.parse(line), 7.0)
    assert rib.growth_holds == {EBGP: 305.0} and V4 not in rib.entries
    feed.bgp.commit()
    assert rib.growth_holds == {} and V4 in rib.entries
    feed.lines(msg("state", {"state": "up"}), now=8.0)
    assert rib.growth_holds == {EBGP: 308.0}
    feed.lines(msg("state", {"state": "down", "reason": "hold timer"}), now=9.0)  # gave up waiting
    assert rib.growth_holds == {}
    feed.lines(msg("state", {"state": "up"}), now=10.0)
    feed.bgp.tick(10.0 + feed.bgp.settings.eor_timeout)  # no end-of-RIB: the wait gives up, so does the hold
    assert rib.growth_holds == {}
