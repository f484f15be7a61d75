"""ExaBGP's JSON (kernelsync.feeds.exabgp), pure: golden captures of 5.0 and 4.2, the shapes
and quirks of each version, bad lines, the prefix cache, and orjson against json."""
import json
import os
import re

import pytest

from kernelsync.core.model import AF_INET6, parse_prefix
from kernelsync.feeds.exabgp import Ack, FeedError, Parser, Refresh, Shutdown, Version
from tests.unit.feeds.bgp_lines import CAPTURES, V4, V4B, a6, announce, msg


@pytest.mark.parametrize("version", ["5.0", "4.2"])
def test_golden_capture_parses_completely(version):
    parser = Parser()
    kinds = {}
    for line in open(os.path.join(CAPTURES, "exabgp-%s.jsonl" % version)):
        event = parser.parse(line)
        kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
    # states (connected/up/down), updates, EORs (2 peers x 2 families + hB again), refresh
    # begin/end per peer, the ack of our route-refresh command, ExaBGP's shutdown
    assert kinds == {"PeerState": 11, "Update": 10, "EndOfRib": 6, "Refresh": 4, "Ack": 1, "Shutdown": 1,
                     "NoneType": 1}  # the peer's NOTIFICATION before its down


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
    (msg("state", {"state": 7}), "not a string"),
    (msg("update", {"direction": "receive", "message": {"update": {"announce": []}}}),
     "update.announce is a list, not an object"),
    (msg("update", {"direction": "receive", "message": {"update": []}}),
     "neighbor.message.update is a list, not an object"),
    (msg("update", {"direction": "receive", "message": {"update": {"withdraw": "x"}}}),
     "update.withdraw is 'x', not an object"),
    (msg("state", {"asn": {"local": 65010, "peer": "65001"}, "state": "up"}),
     "neighbor.asn.peer is '65001', not an AS number"),
    (msg("state", {"address": {"local": "192.0.2.2", "peer": ["x"]}, "state": "up"}),
     "neighbor.address.peer is a list, not an address string"),
    ('{"type": "update"}', "neighbor is missing"),
])
def test_bad_lines_raise_feed_error(line, problem):
    """A broken structure refuses the line, with the field named, never a Python exception's text."""
    with pytest.raises(FeedError, match=problem) as info:
        Parser().parse(line)
    assert "Error" not in str(info.value) and "object has no attribute" not in str(info.value)


ANNOUNCE_NH = "update.announce.ipv4 unicast[192.0.2.1]"


@pytest.mark.parametrize("nlri, problem, readable", [
    ({"nlri": "198.51.100.0/24", "path-information": 1e400}, "path-information inf is not a 32-bit unsigned", True),
    ({"nlri": "198.51.100.0/24", "path-information": -1}, "path-information -1 is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": 4294967296}, "path-information 4294967296 is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": 1.5}, "path-information 1.5 is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": True}, "path-information True is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": "\uff11\uff12"}, "path-information '１２' is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": "1_0"}, "path-information '1_0' is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": "12"}, "path-information '12' is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": "0.0.0.2 x"}, "path-information '0.0.0.2 x' is not", True),
    ({"nlri": "198.51.100.0/24", "path-information": "0x1.0.0.0"}, "is not a 32-bit", True),
    ({"nlri": "198.51.100.0/24", "path-information": "x.y"}, "path-information 'x.y'", True),
    ({"nlri": "198.51.100.0/+24"}, "length '\\+24' is not a number", False),
    ({"nlri": "198.51.100.0/ 24"}, "length ' 24' is not a number", False),
    ({"nlri": "198.51.100.0/2_4"}, "length '2_4' is not a number", False),
    ({"nlri": "198.51.100.0/\uff12\uff14"}, "is not a number", False),
    ({"nlri": "198.51.100.0/33"}, "not a prefix", False),
    ({"nlri": "198.51.100.1/24"}, "host bits", False),
    ({"nlri": "2001:db8::/32"}, "does not belong", False),
    ({"nlri": ["198.51.100.0/24"]}, "not a prefix string", False),
    ({"path-information": "0.0.0.1"}, "no nlri field", False),
    (7, "nlri 7 is not a prefix string", False),
])
def test_bad_nlri_is_refused_alone(nlri, problem, readable):
    """Issue 12 defect 6: a bad NLRI is refused with its field named; the UPDATE's other NLRIs
    are used; a bad one whose prefix is readable is treated as withdrawn (every path of it
    when its path id cannot be read)."""
    line = announce(["203.0.113.0/25", nlri, {"nlri": "192.0.2.128/25", "path-information": "0.0.0.7"}],
                    "192.0.2.1")
    json.loads(line)  # still JSON
    p = Parser()
    event = p.parse(line)
    assert [(a.prefix, a.path_id) for a in event.announce] == [(V4B, 0), (parse_prefix("192.0.2.128/25"), 7)]
    (bad,) = event.bad
    assert bad.where == ANNOUNCE_NH + "[1]"
    assert re.search(problem, bad.why), bad.why
    assert "Error" not in bad.why
    assert bad.path_id is None and event.withdraw == ()
    assert bad.prefix == (V4 if readable else None)
    # the same in a withdraw, and on the prefix cache's hit (the prefix seen before)
    again = p.parse(announce(None, None, withdraw=["203.0.113.0/25"]).replace(
        '[{"nlri": "203.0.113.0/25"}]', json.dumps([{"nlri": "203.0.113.0/25"}, nlri])))
    assert again.withdraw == ((V4B, 0),) and len(again.bad) == 1
    assert again.bad[0].where == "update.withdraw.ipv4 unicast[1]" and re.search(problem, again.bad[0].why)


def test_bad_next_hop_or_attributes_withdraw_what_they_carry():
    """A bad next hop withdraws its NLRIs; bad path attributes (RFC 7606 treat-as-withdraw)
    withdraw every NLRI of the UPDATE; the field is named."""
    p = Parser()
    nh = p.parse(announce(["198.51.100.0/24", {"nlri": "203.0.113.0/25", "path-information": "0.0.0.3"}],
                          "not-an-address"))
    assert nh.announce == () and nh.withdraw == ((V4, 0), (V4B, 3))
    assert [b.where for b in nh.bad] == ["update.announce.ipv4 unicast[not-an-address][0]",
                                         "update.announce.ipv4 unicast[not-an-address][1]"]
    assert "'not-an-address' is not an IP address" in nh.bad[0].why
    for attrs, problem in (({"origin": "igp", "med": "high"}, "update.attribute.med 'high' is not a 32-bit"),
                           ({"origin": "igp", "local-preference": 1e400}, "local-preference inf is not"),
                           ({"origin": 7}, "origin 7 is not"),
                           ({"as-path": {"0": "x"}}, "update.attribute.as-path"),
                           ({"as-path": [1, "x"]}, "update.attribute.as-path: element 'x'")):
        event = p.parse(announce(["198.51.100.0/24"], "192.0.2.1", attrs=attrs))
        assert event.announce == () and event.withdraw == ((V4, 0),)
        assert problem in event.bad[0].why, event.bad[0].why


def test_control_bytes_in_messages_are_escaped():
    p = Parser()
    event = p.parse(announce(["198.51.100.0/24\x00\x1b[31m\r"], "192.0.2.1\x1b"))
    text = " ".join(b.describe() for b in event.bad)
    assert not any(c in text for c in "\x00\x1b\r")
    assert "[192.0.2.1\\x1b]" in text and "24\\x00\\x1b[31m\\r'" in text


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
        event = p.parse(announce(["198.51.100.0/24"], "192.0.2.1", attrs={
            "as-path": {"0": {"element": "as-sequence", "value": [bad]}}}))
        assert event.announce == () and event.withdraw == ((V4, 0),)  # treated as withdrawn
        assert "update.attribute.as-path: segment" in event.bad[0].why
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



def test_parser_reads_the_version_reply():
    p = Parser()
    assert p.parse("exabgp 5.0.15") == Version("5.0.15")
    assert p.parse("exabgp 4.2.25\n") == Version("4.2.25")
    assert isinstance(p.parse("done"), Ack)



def _update_line(family, nexthop, nlris):
    nb = {"address": {"local": "192.0.2.2", "peer": "192.0.2.1"}, "asn": {"local": 65010, "peer": 65001},
          "direction": "receive", "message": {"update": {
              "attribute": {"origin": "igp", "as-path": {"0": {"element": "as-sequence", "value": [65001]}}},
              "announce": {family: {nexthop: [{"nlri": n} for n in nlris]}}}}}
    return json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": nb})


def _withdraw_line(family, nlris):
    nb = {"address": {"local": "192.0.2.2", "peer": "192.0.2.1"}, "asn": {"local": 65010, "peer": 65001},
          "direction": "receive", "message": {"update": {"withdraw": {family: [{"nlri": n} for n in nlris]}}}}
    return json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": nb})


@pytest.mark.parametrize("seen, wrong", [
    (("ipv4 unicast", "192.0.2.1", "198.51.100.0/24"), ("ipv6 unicast", "2001:db8::1", "198.51.100.0/24")),
    (("ipv6 unicast", "2001:db8::1", "2001:db8:100::/48"), ("ipv4 unicast", "192.0.2.1", "2001:db8:100::/48")),
    # a single next hop (the fast path) and two next hops (the merging path)
    (("ipv4 unicast", "192.0.2.1", "198.51.100.0/24"), ("ipv6 unicast", ("2001:db8::1", "fe80::1"), "198.51.100.0/24")),
])
def test_cached_prefix_of_the_other_family_is_rejected(seen, wrong):
    """A prefix text seen under one family is refused under the other exactly as when it was never
    seen (the prefix cache is no way around the family check), in announces and withdraws."""
    from kernelsync.feeds.exabgp import Parser

    family, nexthop, text = wrong
    if isinstance(nexthop, tuple):
        nb = {"address": {"local": "192.0.2.2", "peer": "192.0.2.1"}, "asn": {"local": 65010, "peer": 65001},
              "direction": "receive", "message": {"update": {"attribute": {"origin": "igp"}, "announce": {
                  family: {nh: [{"nlri": text}] for nh in nexthop}}}}}
        announce = json.dumps({"exabgp": "5.0.0", "type": "update", "neighbor": nb})
    else:
        announce = _update_line(family, nexthop, [text])
    for line in (announce, _withdraw_line(family, [text])):
        fresh = Parser().parse(line)
        assert not fresh.announce and not fresh.withdraw and fresh.bad
        assert all(bad.why == "nlri %r does not belong to %s" % (text, family) for bad in fresh.bad)
        parser = Parser()
        assert parser.parse(_update_line(seen[0], seen[1], [seen[2]])).announce  # now cached
        assert parser.parse(line) == fresh
        # and the right family still takes it from the cache
        assert parser.parse(_update_line(seen[0], seen[1], [seen[2]])).announce


def _parse_both(line, monkeypatch):
    """(outcome with orjson, outcome with json alone, whether orjson decoded it): an event's repr
    or the FeedError's text, each from a fresh parser."""
    import kernelsync.feeds.exabgp as ex

    fast = ex._fast_loads
    taken = []

    def spy(raw):
        try:
            msg = fast(raw)
        except Exception as exc:
            taken.append(type(exc).__name__)
            raise
        taken.append("decoded")
        return msg

    def outcome():
        try:
            return repr(ex.Parser().parse(line))
        except ex.FeedError as exc:
            return "FeedError: %s" % exc

    monkeypatch.setattr(ex, "_fast_loads", spy)
    with_orjson = outcome()
    monkeypatch.setattr(ex, "_fast_loads", None)
    alone = outcome()
    monkeypatch.setattr(ex, "_fast_loads", fast)
    return with_orjson, alone, taken


def test_orjson_refusal_falls_back_to_json(monkeypatch):
    """Lines orjson refuses but json takes (NaN, Infinity, a lone surrogate escape) are decoded by
    json: the same Update as without orjson."""
    pytest.importorskip("orjson")
    good = _update_line("ipv4 unicast", "192.0.2.1", ["198.51.100.0/24"])
    with_orjson, alone, taken = _parse_both(good, monkeypatch)
    assert taken == ["decoded"] and with_orjson == alone and "Update(" in alone
    for odd in ('"time": NaN', '"time": -Infinity', '"host": "\\ud800"'):
        line = good.replace('"exabgp": "5.0.0"', '"exabgp": "5.0.0", ' + odd)
        with_orjson, alone, taken = _parse_both(line, monkeypatch)
        assert taken == ["JSONDecodeError"], odd
        assert with_orjson == alone and "Update(" in alone, odd


def test_orjson_not_given_what_it_decodes_otherwise(monkeypatch):
    """orjson reads integers beyond 64 bits as floats and takes nesting json refuses: such lines
    never reach it, and come out as with json alone."""
    pytest.importorskip("orjson")
    state = ('{"exabgp": "5.0.0", "type": "state", "neighbor": {"address": {"local": "192.0.2.2", "peer": '
             '"192.0.2.1"}, "asn": {"local": 65010, "peer": %s}, "state": "down", "reason": %s}}')
    for line in (state % ("65001", str(2 ** 64 + 1)),  # the reason is str() of it: the int, not a float
                 state % (str(-2 ** 63 - 1), '"x"'),  # refused, with the number in the message
                 state % ("65001", "[" * 700 + "]" * 700),  # deeper than json takes
                 state % ("65001", "[" * 990 + "]" * 990)):
        with_orjson, alone, taken = _parse_both(line, monkeypatch)
        assert taken == [] and with_orjson == alone
    assert "reason='%d'" % (2 ** 64 + 1) in _parse_both(state % ("65001", str(2 ** 64 + 1)), monkeypatch)[1]
    assert "JSON nested too deeply" in _parse_both(state % ("65001", "[" * 990 + "]" * 990), monkeypatch)[1]


def test_orjson_and_json_alike_on_mutated_captures(monkeypatch):
    """A small random-mutation fuzz of the golden captures: with orjson or json alone, the same
    events and the same errors, in the same order (parsers with state: their caches)."""
    pytest.importorskip("orjson")
    import random

    import kernelsync.feeds.exabgp as ex

    lines = [l for name in ("exabgp-5.0.jsonl", "exabgp-4.2.jsonl")
             for l in open(os.path.join(CAPTURES, name)).read().splitlines() if l.strip()]
    tokens = ["18446744073709551616", "-9223372036854775809", "1" + "0" * 25, "4294967296", "65001.0", "1e400",
              "NaN", "Infinity", '"\\ud800"', '"\\ud83d\\ude00"', "null", "[]", "{}", "[" * 600, "]", "}", ",",
              ":", '"', "\\", "0", "-", ".", "e", " "]
    rng = random.Random(20240601)
    fast = ex._fast_loads
    both = [ex.Parser(), ex.Parser()]
    decoded = 0

    def outcome(parser, line):
        try:
            return repr(parser.parse(line))
        except ex.FeedError as exc:
            return "FeedError: %s" % exc

    for _ in range(3000):
        line = rng.choice(lines)
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(line) + 1)
            cut = rng.choice((0, 0, 1, rng.randint(1, 12)))
            line = line[:i] + rng.choice(tokens) + line[i + cut:]
        results = []
        for parser, loads in zip(both, (fast, None)):
            monkeypatch.setattr(ex, "_fast_loads", loads)
            results.append(outcome(parser, line))
        monkeypatch.setattr(ex, "_fast_loads", fast)
        assert results[0] == results[1], line
        decoded += not results[0].startswith("FeedError")
    assert decoded > 500  # not only errors

