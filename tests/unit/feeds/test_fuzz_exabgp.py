"""Fuzzing ExaBGP's JSON parser (kernelsync.feeds.exabgp) and the BGP feed behind it, with
hypothesis (issue 12, build item 3): mutations of the golden captures and structure-aware
UPDATEs with random bad fields.

Properties: nothing but :class:`FeedError` escapes the parser; whatever it accepts is
semantically valid (address lengths, prefix length, no host bits, path id range); the valid
NLRIs of an UPDATE are used whatever its bad ones; a line the feed refuses changes nothing in
the Adj-RIB-In or the RIB.

CI runs the ``ci`` profile of tests/conftest.py (derandomized: the same examples every run, a
few seconds per test); a long run: ``python3 -m pytest tests/unit/feeds/test_fuzz_exabgp.py
tests/unit/feeds/test_fuzz_fpm.py --hypothesis-profile=long --hypothesis-show-statistics``
(random, 50,000 examples per test; a failure prints the example and a ``@reproduce_failure``
blob).
"""
import json
import os
import selectors
import socket

from hypothesis import given
from hypothesis import strategies as st

from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, AF_INET6, IfAddress, Link
from kernelsync.core.rib import Rib
from kernelsync.feeds.bgp import BgpSettings
from kernelsync.feeds.bgpfeed import BgpFeed
from kernelsync.feeds.channels import ExabgpStreams
from kernelsync.feeds.exabgp import Announce, BadNlri, FeedError, Parser, Update
from tests.support.feeds import DumpingKernel, RecordingChannel
from tests.unit.feeds.bgp_lines import CAPTURES



def _read(name):
    with open(os.path.join(CAPTURES, name)) as fh:
        return fh.read().splitlines()


LINES = [line for name in ("exabgp-5.0.jsonl", "exabgp-4.2.jsonl") for line in _read(name) if line.strip()]
BITS = {AF_INET: 32, AF_INET6: 128}
TOKENS = ["1e400", "-1", "4294967296", "1.5", "true", "false", "null", '"\\uff11\\uff12"', '"1_0"', '"+24"', '" 24"',
          '"2_4"', "/+24", "/ 24", "/2_4", "/33", "/129", "/-1", "\\u0000", "\\u001b", "\\r", "[]", "{}", "[", "]", "{",
          "}", ",", ":", '"', "0", "9", "-", ".", "e", " ", "0.0.0.", "255.255.255.255", "::", "fe80::", "/", "\\"]


def check_prefix(prefix):
    family, packed, plen = prefix
    assert family in BITS and len(packed) == BITS[family] // 8 and 0 <= plen <= BITS[family]
    assert int.from_bytes(packed, "big") & ((1 << (BITS[family] - plen)) - 1) == 0, prefix


def check_event(event):
    """Whatever the parser accepts is semantically valid."""
    if not isinstance(event, Update):
        return
    for a in event.announce:
        assert type(a) is Announce
        check_prefix(a.prefix)
        assert type(a.path_id) is int and 0 <= a.path_id <= 0xFFFFFFFF
        nh_family, nh = a.nexthop
        assert nh_family in BITS and len(nh) == BITS[nh_family] // 8
        assert a.link_local is None or len(a.link_local) == 16
    for prefix, path_id in event.withdraw:
        check_prefix(prefix)
        assert type(path_id) is int and 0 <= path_id <= 0xFFFFFFFF
    for bad in event.bad:
        assert type(bad) is BadNlri and bad.where and bad.why and bad.where.isprintable() and bad.why.isprintable()
        if bad.prefix is not None:
            check_prefix(bad.prefix)
        assert "Error" not in bad.why


def parse_checked(parser, line):
    try:
        event = parser.parse(line)
    except FeedError as exc:
        text = str(exc)
        assert text.isprintable() and "object has no attribute" not in text and "Error" not in text, text
        return None
    check_event(event)
    return event


@st.composite
def mutated_lines(draw):
    line = draw(st.sampled_from(LINES))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(line)))
        cut = draw(st.sampled_from([0, 0, 1, 2, 8]))
        token = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=3)))
        line = line[:i] + token + line[i + cut:]
    return line


@given(mutated_lines())
def test_mutated_captures_raise_only_feed_error_and_accept_only_valid(line):
    parse_checked(Parser(), line)


# structure-aware UPDATEs ---------------------------------------------------------------------

GOOD_V4 = ["198.51.100.0/24", "203.0.113.0/25", "192.0.2.128/25", "10.0.0.0/8", "0.0.0.0/0", "192.0.2.1/32",
           "192.0.2.1"]
GOOD_V6 = ["2001:db8:100::/48", "2001:db8::1/128", "::/0", "2001:db8:53::/64"]
BAD_PREFIXES = ["198.51.100.0/+24", "198.51.100.0/ 24", "198.51.100.0/2_4", "198.51.100.0/\uff12\uff14",
                "198.51.100.0/33", "198.51.100.1/24", "198.51.100.0/24 ", " 198.51.100.0/24", "198.51.100.0/",
                "198.51.100.0/024x", "2001:db8::/129", "2001:db8::1/64", "1.2.3/24", "fe80::1%eth0/128",
                "198.51.100.0/24\x00", "\x1b[2J", "", 24, None, ["198.51.100.0/24"], {"a": 1}, True, 1.5]
GOOD_IDS = [0, 1, 7, 0xFFFFFFFF, "0.0.0.2", "0.0.0.3", "255.255.255.255", "0.0.0.0"]
BAD_IDS = [-1, 4294967296, 1.5, True, False, "\uff11\uff12", "1_0", "12", "0.0.0.2 x", " 0.0.0.2", "0x1.0.0.0",
           "1.2.3", "01.2.3.4", "x.y", [], {}, "\x00", 1e300, "INF"]
GOOD_NH = {AF_INET: ["192.0.2.1", "10.9.0.5"], AF_INET6: ["2001:db8::1", "fe80::1"]}
BAD_NH = ["not-an-address", "192.0.2.256", "", "192.0.2.1\x00", "1e400"]
GOOD_ATTRS = [{"origin": "igp", "as-path": {"0": {"element": "as-sequence", "value": [65001]}}},
              {"origin": "egp", "as-path": [65001, 64512], "med": 10, "local-preference": 200}, {}]
BAD_ATTRS = [{"origin": "igp", "med": "high"}, {"origin": 7}, {"med": -1}, {"local-preference": 1.5},
             {"as-path": {"0": "x"}}, {"as-path": [1, "x"]}, {"as-path": {"0": {"element": "as-weird", "value": [1]}}},
             {"med": 4294967296}]
INF = "__INF__"  # written as the JSON number 1e400 (json.dumps would write Infinity)


def nlri_value(prefix, path_id):
    if path_id is None:
        return prefix if isinstance(prefix, str) and prefix and "/" in prefix else {"nlri": prefix}
    return {"nlri": prefix, "path-information": path_id}


@st.composite
def updates(draw):
    """``(line, expected)``: a well-formed UPDATE with random bad fields; ``expected``: the
    (prefix text, family, path id) of its valid NLRIs under valid next hops, and how many bad."""
    attrs_bad = draw(st.booleans()) and draw(st.booleans())
    attrs = draw(st.sampled_from(BAD_ATTRS if attrs_bad else GOOD_ATTRS))
    announce, withdraw = {}, {}
    good, bad = set(), 0
    for family, af, pool in (("ipv4 unicast", AF_INET, GOOD_V4), ("ipv6 unicast", AF_INET6, GOOD_V6)):
        if draw(st.booleans()):
            by_nh = {}
            for _ in range(draw(st.integers(1, 2))):
                nh_bad = draw(st.integers(0, 5)) == 0
                nh = draw(st.sampled_from(BAD_NH if nh_bad else GOOD_NH[af]))
                nlris = by_nh.setdefault(nh, [])
                for _ in range(draw(st.integers(0, 4))):
                    prefix_bad = draw(st.integers(0, 3)) == 0
                    id_bad = draw(st.integers(0, 4)) == 0
                    prefix = draw(st.sampled_from(BAD_PREFIXES if prefix_bad else pool))
                    path_id = draw(st.sampled_from(BAD_IDS + [INF] if id_bad else GOOD_IDS + [None]))
                    nlris.append(nlri_value(prefix, path_id))
                    if prefix_bad or id_bad:
                        bad += 1
                    elif not nh_bad and not attrs_bad:
                        good.add((prefix, af, path_id))
            announce[family] = by_nh
        if draw(st.booleans()):
            nlris = []
            for _ in range(draw(st.integers(0, 3))):
                prefix_bad = draw(st.integers(0, 3)) == 0
                nlris.append({"nlri": draw(st.sampled_from(BAD_PREFIXES if prefix_bad else pool))})
                bad += prefix_bad
            withdraw[family] = nlris
    update = {"attribute": attrs}
    if announce:
        update["announce"] = announce
    if withdraw:
        update["withdraw"] = withdraw
    body = {"exabgp": "5.0.0", "type": "update", "neighbor": {
        "address": {"local": "192.0.2.2", "peer": "192.0.2.1"}, "asn": {"local": 65010, "peer": 65001},
        "direction": "receive", "message": {"update": update}}}
    return json.dumps(body).replace('"%s"' % INF, "1e400"), good, bad


def _id(path_id):
    if path_id is None:
        return 0
    if isinstance(path_id, str):
        return int.from_bytes(socket.inet_aton(path_id), "big")
    return path_id


@given(updates())
def test_structured_updates_keep_the_valid_nlri_and_refuse_the_bad_ones(case):
    line, good, bad = case
    event = parse_checked(Parser(), line)
    assert isinstance(event, Update), line  # the structure is sound: only parts are bad
    announced = {(a.prefix, a.path_id) for a in event.announce}
    want = {((af, socket.inet_pton(af, text.partition("/")[0]),
              int(text.partition("/")[2]) if "/" in text else BITS[af]), _id(pid)) for text, af, pid in good}
    assert want <= announced, line  # every valid NLRI is used
    assert len(event.bad) >= bad, line  # every bad NLRI is refused (and named)


# a refused line changes nothing -----------------------------------------------------------

def make_feed():
    links = LinkTable({4: Link(index=4, name="ha", up=True, carrier=True)})
    kernel = DumpingKernel(routes=(), addresses=[IfAddress(AF_INET, 4, socket.inet_aton("192.0.2.2"), 29)])
    rib = Rib()
    streams = ExabgpStreams()
    feed = BgpFeed(rib, BgpSettings(startup_wait=0), kernel, 200, links, streams, 0.0)
    feed.start(selectors.DefaultSelector(), 0.0)
    channel = RecordingChannel()
    streams.channels.append(channel)
    return feed, channel


def adj_rib_in(feed):
    return ({address: (peer.state, {key: (p.nexthop, p.link_local, p.attrs, p.stale) for key, p in peer.paths.items()})
             for address, peer in feed.bgp.peers.items()},
            {prefix: dict(entry) for prefix, entry in feed.bgp.by_prefix.items()}, dict(feed.bgp.dirty))


FEED, FEED_CHANNEL = make_feed()
for _line in LINES:  # the golden state: peers and paths to lose
    if '"shutdown"' not in _line and '"down"' not in _line:
        FEED.feed(FEED_CHANNEL, [_line.encode()], 1.0)


@given(st.one_of(mutated_lines(), updates().map(lambda case: case[0])))
def test_a_refused_line_changes_nothing(line):
    before = adj_rib_in(FEED)
    bad_lines = FEED.counters["bad_lines"]
    try:
        FEED.feed(FEED_CHANNEL, [line.encode("utf-8", errors="surrogatepass")], 2.0)
    finally:
        if FEED.counters["bad_lines"] > bad_lines:
            assert adj_rib_in(FEED) == before, line
        else:  # accepted: put the golden state back for the next example
            for _line in LINES:
                if '"shutdown"' not in _line and '"down"' not in _line:
                    FEED.feed(FEED_CHANNEL, [_line.encode()], 1.0)
