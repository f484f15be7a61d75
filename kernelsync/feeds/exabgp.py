"""ExaBGP's process API, JSON encoder (``encoder json``): one line in, a list of events out.  Pure.

Mirrors the JSON that ExaBGP 5.0 (``"exabgp": "5.0.0"``) and 4.2 (``"exabgp": "4.0.1"``) write to
a process's stdin (exabgp/reactor/api/response/json.py), as captured in ``tests/data``:

* ``type: state``        -> :class:`PeerState` (``connected``, ``up``, ``down`` + reason)
* ``type: update``       -> :class:`Update` (announce and withdraw, either or both) or
  :class:`EndOfRib` (``message.eor``)
* ``type: refresh``      -> :class:`Refresh` (route-refresh ``begin``/``end`` window, RFC 7313)
* ``type: notification`` -> :class:`Shutdown` for ExaBGP's own ``"notification": "shutdown"``;
  a BGP NOTIFICATION from a peer is informational (``state: down`` follows)
* ``done`` / ``error`` lines (ExaBGP 5.0 command acks) -> :class:`Ack`

Differences handled: 4.2's AS path is a plain list (plus ``confederation-path``), 5.0's a dict of
segments; 4.2 writes route-refresh families as ``"afi": ""ipv4""`` (invalid JSON, repaired
here).  An IPv6 NLRI listed under both a global and a link-local (``fe80::``) next hop (a 32-byte
MP_REACH next hop, RFC 2545) becomes one announcement carrying both.

Every malformed input raises :class:`FeedError` whose message names the problem; the caller
logs it with the (truncated) line, counts it and goes on.
"""
from __future__ import annotations

import json
import re
import socket
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import attrs

from ..core.model import AF_INET, AF_INET6, Prefix

FAMILIES = {"ipv4 unicast": AF_INET, "ipv6 unicast": AF_INET6}
FAMILY_NAMES = {v: k for k, v in FAMILIES.items()}
ORIGINS = {"igp": 0, "egp": 1, "incomplete": 2}
# messages a process may be sent that carry nothing for the FIB (api receive options)
IGNORED_TYPES = frozenset(("open", "keepalive", "operational", "signal", "negotiated", "fsm", "packets"))
_BAD_QUOTES = re.compile(r'""([A-Za-z0-9_ -]*)""')
_new_tuple = tuple.__new__
_NOTHING: dict = {}  # an absent part of a message (read only)


class FeedError(ValueError):
    """A line that cannot be used: not JSON, an unknown message type, a field of the wrong type."""


@attrs.frozen(cache_hash=True)
class BgpAttrs:
    """The path attributes the decision process reads (RFC 4271 5.1, 9.1.2.2).

    ``as_path``: the AS numbers of AS_SEQUENCE segments in order, then those of AS_SETs
    (confederation segments are left out); ``as_path_len``: its length for the decision (an
    AS_SET counts 1, confederation segments 0); ``origin``: 0 IGP, 1 EGP, 2 INCOMPLETE;
    ``med``: MULTI_EXIT_DISC or None (treated as 0, RFC 4271 9.1.2.2 c); ``local_pref``:
    LOCAL_PREF or None (iBGP only; 100 when absent); ``neighbour_as``: first AS of the path
    (None for an empty path: a route from our own AS)."""

    origin: int = 0
    as_path: Tuple[int, ...] = ()
    as_path_len: int = 0
    med: Optional[int] = None
    local_pref: Optional[int] = None
    neighbour_as: Optional[int] = None


@attrs.frozen
class Neighbor:
    """The session a message came over: ``peer``/``local`` addresses (text as ExaBGP writes
    them), ``peer_as``/``local_as``."""

    peer: str
    local: str
    peer_as: int
    local_as: int

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as


@attrs.frozen
class PeerState:
    neighbor: Neighbor
    state: str  # "connected", "up", "down"
    reason: str = ""


class Announce(NamedTuple):
    """One NLRI: ``prefix``; ``path_id`` (ADD-PATH, RFC 7911; 0 without); ``nexthop`` =
    ``(family, packed)`` of the next hop; ``link_local``: packed ``fe80::`` next hop sent beside a
    global one (or None).  A tuple: one is built per NLRI on the hot path."""

    prefix: Prefix
    path_id: int
    nexthop: Tuple[int, bytes]
    link_local: Optional[bytes]


class Update(NamedTuple):
    """A BGP UPDATE: ``announce`` (NLRIs with ``attrs``) and ``withdraw`` (``(prefix, path_id)``);
    ``skipped``: families present but not handled (e.g. ``ipv4 flow``).  A tuple: one is built
    per UPDATE on the hot path (an attrs class took three times as long)."""

    neighbor: Neighbor
    attrs: Optional[BgpAttrs]
    announce: Tuple[Announce, ...]
    withdraw: Tuple[Tuple[Prefix, int], ...]
    skipped: Tuple[str, ...] = ()


@attrs.frozen
class EndOfRib:
    neighbor: Neighbor
    family: str  # "ipv4 unicast"


@attrs.frozen
class Refresh:
    """Enhanced route refresh (RFC 7313): ``subtype`` ``begin`` or ``end`` (``request`` ignored)."""

    neighbor: Neighbor
    family: str
    subtype: str


@attrs.frozen
class Shutdown:
    """ExaBGP is stopping (it sent ``state down`` for each peer before this)."""


@attrs.frozen
class Ack:
    """ExaBGP 5.0's reply to a command we wrote: ``ok`` for ``done``, not for ``error``."""

    ok: bool
    text: str


@attrs.frozen
class Version:
    """ExaBGP's reply to our ``version`` command: ``exabgp 5.0.15`` (4.2: ``exabgp 4.2.25``)."""

    version: str


Event = Union[PeerState, Update, EndOfRib, Refresh, Shutdown, Ack, Version]


class Parser:
    """Turns lines into events; interns attribute sets (most UPDATEs share a few)."""

    def __init__(self) -> None:
        self._attrs: Dict[tuple, BgpAttrs] = {}
        self._neighbors: Dict[tuple, Neighbor] = {}
        self._addr: Dict[str, Tuple[int, bytes]] = {}
        # checked prefixes by text, one cache per family: a hit needs no family check (an IPv4
        # text seen under ipv4 unicast is not in ipv6 unicast's cache, so it is checked, and
        # refused, there as if never seen)
        self._prefixes: Dict[int, Dict[str, Prefix]] = {af: {} for af in FAMILY_NAMES}

    def parse(self, line: str) -> Optional[Event]:
        """One line (without its newline) -> an event, or None for a message that carries
        nothing for the FIB.  Raises :class:`FeedError`."""
        text = line.strip()
        if not text:
            return None
        if text[0] not in "{[":
            if text in ("done", "error"):
                return Ack(ok=text == "done", text=text)
            if text.startswith("exabgp ") and len(text) < 40:
                return Version(text[7:].strip())
            raise FeedError("not JSON (and not a done/error ack or a version reply)")
        if _fast_loads is None:
            msg = _decode(text)
        else:
            try:
                raw = text.encode()
                numbers = raw.translate(_NUMBERS)
                if _LONG_NUMBER in numbers or (len(raw) > _SHALLOW_CHARS and numbers.count(b"[") > _SHALLOW_OPENINGS):
                    raise ValueError("not for orjson")
                msg = _fast_loads(raw)
            except Exception:  # whatever orjson refuses (or is not given), json decides and says why
                msg = _decode(text)
        if not isinstance(msg, dict):
            raise FeedError("a JSON %s, not an object" % type(msg).__name__)
        kind = msg.get("type")
        try:
            if kind == "update":
                return self._update(msg)
            if kind == "state":
                nb = msg["neighbor"]
                state = nb["state"]
                if not isinstance(state, str):
                    raise FeedError("neighbor.state is %r, not a string" % (state,))
                return PeerState(self._neighbor(nb), state, str(nb.get("reason", "")))
            if kind == "refresh":
                return self._refresh(msg)
            if kind == "notification":
                if msg.get("notification") == "shutdown":
                    return Shutdown()
                return None
            if kind in IGNORED_TYPES:
                return None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, FeedError):
                raise
            raise FeedError("%s message: %s %s" % (kind, type(exc).__name__, exc)) from None
        raise FeedError("unknown message type %r" % (kind,))

    # pieces --------------------------------------------------------------------------------
    def _neighbor(self, nb: dict) -> Neighbor:
        address, asn = nb["address"], nb["asn"]
        key = (address["peer"], address["local"], asn["peer"], asn["local"])
        found = self._neighbors.get(key)
        if found is None:
            peer, local, peer_as, local_as = key
            if not isinstance(peer, str) or not isinstance(local, str):
                raise FeedError("neighbor.address must hold strings, not %r" % (address,))
            if not _is_asn(peer_as) or not _is_asn(local_as):
                raise FeedError("neighbor.asn must hold AS numbers, not %r" % (asn,))
            found = self._neighbors[key] = Neighbor(peer, local, peer_as, local_as)
        return found

    def _update(self, msg: dict) -> Optional[Event]:
        nb = msg["neighbor"]
        neighbor = self._neighbor(nb)
        if nb.get("direction", "receive") != "receive":
            return None
        message = nb["message"]
        if "eor" in message:
            eor = message["eor"]
            return EndOfRib(neighbor, "%s %s" % (_word(eor["afi"]), _word(eor["safi"])))
        update = message["update"]
        skipped: List[str] = []
        announce: List[Announce] = []
        withdraw: List[Tuple[Prefix, int]] = []
        bgp_attrs = None
        for family, by_nexthop in update.get("announce", _NOTHING).items():
            af = FAMILIES.get(family)
            if af is None:
                skipped.append(family)
                continue
            if bgp_attrs is None:
                bgp_attrs = self._attributes(update.get("attribute", _NOTHING))
            self._announce(af, by_nexthop, announce)
        if "withdraw" in update:
            for family, nlris in update["withdraw"].items():
                af = FAMILIES.get(family)
                if af is None:
                    skipped.append(family)
                    continue
                for nlri in nlris:
                    withdraw.append(self._nlri(af, nlri))
        return Update(neighbor, bgp_attrs, tuple(announce), tuple(withdraw) if withdraw else (),
                      tuple(skipped) if skipped else ())

    def _announce(self, af: int, by_nexthop: dict, out: List[Announce]) -> None:
        """``{next hop: [nlri, ...]}`` -> announcements; an NLRI under both a global and a
        link-local next hop is one announcement carrying both (RFC 2545).

        Hot path: one next hop (every IPv4 UPDATE) and NLRIs whose prefix was seen before cost
        two dict lookups each; an NLRI listed twice is merged as with several next hops."""
        if type(by_nexthop) is not dict or len(by_nexthop) != 1:
            self._announce_merged(af, by_nexthop, out)
            return
        ((nh_text, nlris),) = by_nexthop.items()
        nexthop = self._address(nh_text)
        start = len(out)
        prefixes = self._prefixes[af]
        append = out.append
        for nlri in nlris:
            if type(nlri) is dict:
                text = nlri["nlri"]
                info = nlri.get("path-information")
                path_id = 0 if info is None else _path_id(info)
                prefix = prefixes.get(text)
                if prefix is None:
                    prefix = self._new_prefix(af, text)
            else:
                prefix, path_id = self._nlri(af, nlri)
            append(_new_tuple(Announce, (prefix, path_id, nexthop, None)))  # Announce(...), without a call
        count = len(out) - start
        if count > 1 and len({(a.prefix, a.path_id) for a in out[start:]}) != count:
            del out[start:]  # an NLRI listed twice: merged as below
            self._announce_merged(af, by_nexthop, out)

    def _announce_merged(self, af: int, by_nexthop: dict, out: List[Announce]) -> None:
        seen: Dict[Tuple[Prefix, int], int] = {}
        for nh_text, nlris in by_nexthop.items():
            nexthop = self._address(nh_text)
            ll = is_link_local(nexthop[1])
            for nlri in nlris:
                prefix, path_id = self._nlri(af, nlri)
                key = (prefix, path_id)
                index = seen.get(key)
                if index is None:
                    seen[key] = len(out)
                    out.append(Announce(prefix, path_id, nexthop, None))
                    continue
                first = out[index]
                if ll and first.link_local is None:
                    out[index] = Announce(prefix, path_id, first.nexthop, nexthop[1])
                elif not ll and is_link_local(first.nexthop[1]):
                    out[index] = Announce(prefix, path_id, nexthop, first.nexthop[1])
                # else: the same NLRI twice under two global next hops: the first one counts

    def _nlri(self, af: int, nlri) -> Tuple[Prefix, int]:
        if isinstance(nlri, str):  # exabgp.api.compact
            text, path_id = nlri, 0
        else:
            text = nlri["nlri"]
            info = nlri.get("path-information")
            path_id = 0 if info is None else _path_id(info)
        prefix = self._prefixes[af].get(text)
        if prefix is None:
            prefix = self._new_prefix(af, text)
        return prefix, path_id

    def _new_prefix(self, af: int, text) -> Prefix:
        """A prefix not in ``af``'s cache: checked (its family too), then cached for ``af``."""
        if not isinstance(text, str):
            raise FeedError("nlri %r is not a prefix string" % (text,))
        address, slash, length = text.partition("/")
        family = AF_INET6 if ":" in address else AF_INET
        try:
            packed = socket.inet_pton(family, address)
            plen = int(length) if slash else len(packed) * 8
        except (OSError, ValueError):
            raise FeedError("nlri %r is not a prefix" % (text,)) from None
        bits = len(packed) * 8
        host_route = plen == bits  # no host bits; the usual case in a large table
        if not host_route and not 0 <= plen <= bits:
            raise FeedError("nlri %r is not a prefix (length %d)" % (text, plen))
        if family != af:
            raise FeedError("nlri %r does not belong to %s" % (text, FAMILY_NAMES[af]))
        if not host_route and _host_bits(packed, plen):
            raise FeedError("nlri %r has host bits set" % (text,))
        prefix = (family, packed, plen)
        cache = self._prefixes[af]
        if len(cache) < 1 << 20:  # per family (a full IPv4 table and a full IPv6 one fit)
            cache[text] = prefix
        return prefix

    def _address(self, text) -> Tuple[int, bytes]:
        found = self._addr.get(text)
        if found is None:
            if not isinstance(text, str):
                raise FeedError("next hop %r is not an address string" % (text,))
            family = AF_INET6 if ":" in text else AF_INET
            try:
                found = (family, socket.inet_pton(family, text))
            except OSError:
                raise FeedError("%r is not an IP address" % (text,)) from None
            if len(self._addr) < 1 << 16:
                self._addr[text] = found
        return found

    def _attributes(self, attr: dict) -> BgpAttrs:
        if not isinstance(attr, dict):
            raise FeedError("attribute is %r, not an object" % (attr,))
        origin = attr.get("origin", "igp")
        if origin not in ORIGINS:
            raise FeedError("unknown origin %r" % (origin,))
        med = attr.get("med")
        local_pref = attr.get("local-preference")
        if med is not None and not _is_u32(med):
            raise FeedError("med is %r, not a 32-bit integer" % (med,))
        if local_pref is not None and not _is_u32(local_pref):
            raise FeedError("local-preference is %r, not a 32-bit integer" % (local_pref,))
        path, length = _as_path(attr.get("as-path", ()))
        key = (origin, path, length, med, local_pref)
        found = self._attrs.get(key)
        if found is None:
            found = BgpAttrs(origin=ORIGINS[origin], as_path=path, as_path_len=length, med=med,
                             local_pref=local_pref, neighbour_as=path[0] if path else None)
            if len(self._attrs) < 1 << 16:
                self._attrs[key] = found
        return found

    def _refresh(self, msg: dict) -> Optional[Event]:
        nb = msg["neighbor"]
        neighbor = self._neighbor(nb)
        rr = nb.get("route-refresh")
        if rr is None:
            rr = nb.get("message", {}).get("route-refresh")
        if not isinstance(rr, dict):
            raise FeedError("refresh message without a route-refresh object")
        subtype = rr.get("subtype")
        if subtype not in ("begin", "end"):
            return None
        return Refresh(neighbor, "%s %s" % (_word(rr["afi"]), _word(rr["safi"])), subtype)


# json.loads without its Python layers (two regex matches and three calls per line): the same C
# scanner and settings; a line it cannot take whole goes through _loads for json's own error
_scan_once = json.JSONDecoder().scan_once

# orjson (optional) decodes a line in half json's time.  Its result is used only where it is
# json's: orjson reads an integer beyond 64 bits as a float (json: an int) and takes nesting up
# to 1,024 levels (json: until Python's recursion limit, about 1,000 minus the stack in use), so
# a line with a run of 19 digits, or longer than _SHALLOW_CHARS with more than _SHALLOW_OPENINGS
# '[' and '{', goes to json; and whatever orjson refuses (NaN, Infinity, lone surrogates, any
# malformed JSON) goes to json too, which accepts it or raises its own error.  The rest (strings,
# 64-bit integers, floats, duplicate keys: the last one wins) both decode alike; the fuzz in
# tests/test_exabgp.py compares the two.
try:
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - json's C scanner alone
    _fast_loads = None
# digits -> "0", "[" and "{" -> "[", anything else -> " "
_NUMBERS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x5B if b in (0x5B, 0x7B) else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19  # every integer outside [-2**63, 2**63) has 19 digits or more
_SHALLOW_CHARS = 1000  # a document of 1,000 characters is at most 500 deep
_SHALLOW_OPENINGS = 500


def _decode(text: str):
    """json's decoding of a line (one document, ExaBGP 4.2's quotes repaired); FeedError if it
    is no JSON."""
    try:
        msg, end = _scan_once(text, 0)
    except (ValueError, StopIteration, RecursionError):
        msg = end = None
    if end != len(text):  # not one JSON document: json.loads says why (or the repair helps)
        msg = _loads(text)
    return msg


def _loads(text: str):
    """``json.loads`` of a line, with ExaBGP 4.2's route-refresh quotes repaired; FeedError if
    it is no JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise FeedError("JSON nested too deeply") from None
    except ValueError as exc:
        repaired = _BAD_QUOTES.sub(r'"\1"', text)  # ExaBGP 4.2's route-refresh JSON
        if repaired == text:
            raise FeedError("not JSON: %s" % exc) from None
        try:
            return json.loads(repaired)
        except (ValueError, RecursionError):
            raise FeedError("not JSON: %s" % exc) from None


def _as_path(value) -> Tuple[Tuple[int, ...], int]:
    """5.0: ``{"0": {"element": "as-sequence", "value": [..]}, ...}``; 4.2: ``[65001, 64512]``
    (an AS_SET as a nested list).  Returns (ASNs, decision length)."""
    path: List[int] = []
    length = 0
    if type(value) is dict and len(value) == 1 and "0" in value:  # the common shape: one AS_SEQUENCE
        seg = value["0"]
        element, asns = seg["element"], seg["value"]
        if element == "as-sequence" and type(asns) is list:
            for asn in asns:
                if type(asn) is not int or not 0 <= asn <= 0xFFFFFFFF:
                    break
            else:
                return tuple(asns), len(asns)
    if isinstance(value, dict):
        for index in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0):
            seg = value[index]
            element, asns = seg["element"], seg["value"]
            if not isinstance(asns, list) or not all(_is_asn(a) for a in asns):
                raise FeedError("as-path segment %r is not a list of AS numbers" % (seg,))
            if element == "as-sequence":
                path.extend(asns)
                length += len(asns)
            elif element == "as-set":
                path.extend(asns)
                length += 1 if asns else 0
            elif element not in ("confed-sequence", "confed-set", "as-confed-sequence", "as-confed-set"):
                raise FeedError("unknown as-path segment %r" % (element,))
        return tuple(path), length
    if isinstance(value, (list, tuple)):
        for item in value:
            if _is_asn(item):
                path.append(item)
                length += 1
            elif isinstance(item, list) and all(_is_asn(a) for a in item):
                path.extend(item)
                length += 1 if item else 0
            else:
                raise FeedError("as-path element %r is not an AS number" % (item,))
        return tuple(path), length
    raise FeedError("as-path is %r, not a list or object" % (value,))


def _is_asn(value) -> bool:
    return type(value) is int and 0 <= value <= 0xFFFFFFFF


_is_u32 = _is_asn


def _word(value) -> str:
    if not isinstance(value, str) or not value or len(value) > 32:
        raise FeedError("%r is not an AFI/SAFI name" % (value,))
    return value


def _path_id(info) -> int:
    if isinstance(info, int) and not isinstance(info, bool) and 0 <= info <= 0xFFFFFFFF:
        return info
    try:
        return int.from_bytes(socket.inet_aton(info), "big") if isinstance(info, str) and info.count(".") == 3 else int(info)
    except (OSError, ValueError, TypeError):
        raise FeedError("path-information %r is not a path id" % (info,)) from None


def _host_bits(packed: bytes, plen: int) -> bool:
    value = int.from_bytes(packed, "big")
    bits = len(packed) * 8
    return bool(value & ((1 << (bits - plen)) - 1))


def is_link_local(packed: bytes) -> bool:
    """``fe80::/10`` (RFC 4291 2.5.6)."""
    return len(packed) == 16 and packed[0] == 0xFE and packed[1] & 0xC0 == 0x80


def route_refresh_command(family: str) -> str:
    """The command asking every peer to resend ``family`` (``announce route-refresh ipv4 unicast``)."""
    return "announce route-refresh %s" % family


__all__ = ["Parser", "Version", "FeedError", "BgpAttrs", "Neighbor", "PeerState", "Announce", "Update", "EndOfRib",
           "Refresh", "Shutdown", "Ack", "FAMILIES", "is_link_local", "route_refresh_command"]
