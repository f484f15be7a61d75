"""Fuzzing the FPM decoder (kernelsync.feeds.fpm.FpmStream on kernelsync.kernel.codec's strict
decoders) with hypothesis (issue 12, build item 3): zebra's real frames (tests/golden/fpm)
mutated, and route messages built from random fields.

Properties: nothing but :class:`FpmError` (a broken FPM header) escapes; whatever is taken is
semantically valid (families, address lengths per family, prefix length, no host bits, leg
gateways and RTA_VIA of a known family and length, nexthop gateways); a refused frame (raised,
or skipped whole) changes nothing.

CI runs the ``ci`` profile of tests/conftest.py; a long run: see tests/unit/feeds/test_fuzz_exabgp.py
(``--hypothesis-profile=long``).
"""
import json
import os
import struct

from hypothesis import given
from hypothesis import strategies as st

from kernelsync.core.model import AF_INET, AF_INET6
from kernelsync.feeds.fpm import FpmError, FpmStream

GOLDEN = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "golden", "fpm")


def _read(name):
    with open(os.path.join(GOLDEN, name)) as fh:
        return fh.read().splitlines()


FRAMES = [bytes.fromhex(json.loads(line)["hex"]) for name in ("zebra-8.4-multipath.jsonl", "zebra-8.4-nhg.jsonl")
          for line in _read(name) if line.strip()]
ALEN = {AF_INET: 4, AF_INET6: 16}
TABLE, PROTOCOLS = 254, (188, 2, 196)  # zebra's main table: OSPF, connected, static (what the captures hold)


def check_state(stream):
    """Everything taken is semantically valid."""
    for prefix, route in stream.routes.items():
        family, dst, plen = prefix
        assert family in ALEN and len(dst) == ALEN[family] and 0 <= plen <= ALEN[family] * 8
        assert int.from_bytes(dst, "big") & ((1 << (ALEN[family] * 8 - plen)) - 1) == 0
        for leg in route.legs:
            if leg.gateway is not None or leg.gw_family is not None:
                assert leg.gw_family in ALEN and len(leg.gateway) == ALEN[leg.gw_family], route
        route.describe()  # describable
    for nh in stream.nexthops.values():
        assert nh.id > 0
        if nh.gateway is not None:
            assert nh.family in ALEN and len(nh.gateway) == ALEN[nh.family], nh
        for member, weight in nh.group:
            assert member > 0 and 1 <= weight <= 65536
        nh.describe()


def snapshot(stream):
    return (dict(stream.routes), dict(stream.nexthops), {k: set(v) for k, v in stream.users.items()},
            {k: set(v) for k, v in stream.groups_of.items()})


def feed_checked(stream, data):
    """Feed ``data``; a refused frame changes nothing when ``data`` is that one frame (frames
    before a malformed one in the same read are whole and valid: applied, as zebra sent them)."""
    before = snapshot(stream)
    skipped = stream.counters["skipped"]
    one_frame = len(data) >= 4 and struct.unpack_from("!H", data, 2)[0] == len(data)
    try:
        stream.feed(data)
        if one_frame and stream.counters["skipped"] != skipped:  # skipped whole
            assert snapshot(stream) == before and stream.last_error.isprintable()
    except FpmError as exc:
        assert str(exc).isprintable()
        if one_frame:
            assert snapshot(stream) == before
        check_state(stream)
        stream.buffer.clear()  # the connection would be closed
        return False
    check_state(stream)
    return True


def with_length(payload):
    return struct.pack("!BBH", 1, 1, 4 + len(payload)) + payload


@st.composite
def mutated_frames(draw):
    """A prefix of zebra's stream, then one of its frames mutated (the FPM header's length
    fixed up, mostly, so that the mutation reaches the netlink decoder)."""
    n = draw(st.integers(0, len(FRAMES) - 1))
    frame = bytearray(FRAMES[n][4:])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["byte", "byte", "byte", "cut", "insert", "u16"]))
        i = draw(st.integers(0, max(0, len(frame) - 1)))
        if kind == "byte" and frame:
            frame[i] = draw(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 10, 16, 20, 28, 32, 99, 128, 200, 255,
                                             draw(st.integers(0, 255))]))
        elif kind == "cut":
            del frame[i:i + draw(st.integers(1, 12))]
        elif kind == "insert":
            frame[i:i] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "u16" and len(frame) >= i + 2:
            frame[i:i + 2] = struct.pack("=H", draw(st.sampled_from([0, 3, 4, 5, 8, 12, 20, 40, 0xFFFF])))
    data = with_length(bytes(frame)) if draw(st.integers(0, 9)) else FRAMES[n][:4] + bytes(frame)
    return n, data


@given(mutated_frames())
def test_mutated_zebra_frames(case):
    n, data = case
    stream = FpmStream(TABLE, PROTOCOLS)
    for frame in FRAMES[:n]:
        assert feed_checked(stream, frame)
    feed_checked(stream, data)


def nla(kind, payload):
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


addresses = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16),
                      st.binary(max_size=20))
families = st.sampled_from([AF_INET, AF_INET, AF_INET6, AF_INET6, 0, 28, 99])


@st.composite
def legs(draw):
    sub = b""
    choice = draw(st.integers(0, 3))
    if choice == 1:
        sub = nla(5, draw(addresses))
    elif choice == 2:
        sub = nla(18, struct.pack("=H", draw(families)) + draw(addresses))
    elif choice == 3:
        sub = draw(st.binary(max_size=12))
    length = 8 + len(sub)
    if draw(st.integers(0, 5)) == 0:
        length = draw(st.integers(0, 64))
    return struct.pack("=HBBi", length, 0, draw(st.integers(0, 255)), draw(st.integers(1, 5))) + sub


@st.composite
def built_routes(draw):
    family = draw(families)
    plen = draw(st.one_of(st.integers(0, 32), st.integers(0, 255)))
    body = struct.pack("=BBBBBBBBI", family, plen, 0, 0, TABLE, 188, 0, draw(st.sampled_from([1, 1, 1, 6])), 0)
    body += nla(1, draw(addresses)) + nla(6, struct.pack("=I", 20))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        body += nla(5, draw(addresses)) + nla(4, struct.pack("=I", 2))
    elif kind == 1:
        body += nla(18, struct.pack("=H", draw(families)) + draw(addresses)) + nla(4, struct.pack("=I", 2))
    elif kind == 2:
        body += nla(9, b"".join(draw(st.lists(legs(), min_size=1, max_size=4))))
    else:
        body += nla(7, draw(addresses)) + nla(4, struct.pack("=I", 3))
    msg = struct.pack("=IHHII", 16 + len(body), 24, 0x501, 0, 0) + body
    return with_length(msg)


@given(st.lists(built_routes(), min_size=1, max_size=4))
def test_built_routes_from_random_fields(frames):
    stream = FpmStream(TABLE, PROTOCOLS)
    for frame in frames:
        feed_checked(stream, frame)
