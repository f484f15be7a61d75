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

Every malformed input raises :class:`FeedError` whose message names the field and the problem
(``neighbor.asn.peer is a string, not an AS number``), never a Python exception; the caller logs
it with the (truncated, escaped) line, counts it and goes on.  A broken structure refuses the
whole line; a bad NLRI in an UPDATE refuses only that NLRI (RFC 7606's treat-as-withdraw, in
its spirit): :attr:`Update.bad` lists it (:class:`BadNlri`, its field and why), the rest of the
UPDATE is used, and what can still be named of it is withdrawn: ``(prefix, path id)`` in
:attr:`Update.withdraw` when both are readable, a :class:`BadNlri` with ``path_id`` None when
only the prefix is (every path of that prefix from the peer).  A bad next hop or bad path
attributes (origin, as-path, med, local-preference) make every NLRI they carry withdrawn.

Numbers are what ExaBGP writes: a path id (RFC 7911, a 32-bit unsigned integer) is a dotted
quad (``"0.0.0.2"``) or a JSON integer in 0..2**32-1 (floats, booleans, signs, other strings
refused); a prefix length is plain ASCII digits within the family's range (``"+24"``, ``" 24"``,
``"2_4"``, fullwidth digits refused).
"""
from __future__ import annotations

import json
import re
import socket
import struct
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import attrs

from ..core.model import AF_INET, AF_INET6, Prefix
from .base import escape_text

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


class BadNlri(NamedTuple):
    """An NLRI of an UPDATE that cannot be used: ``where`` names it (``update.announce.ipv4
    unicast[192.0.2.1][2]``, control bytes escaped), ``why`` says what is wrong; ``prefix``:
    the prefix if it can still be read (else None), ``path_id``: its path id if it can be read
    too (then ``(prefix, path_id)`` is in :attr:`Update.withdraw`), None if not (every path of
    ``prefix`` from the peer is to be withdrawn)."""

    where: str
    why: str
    prefix: Optional[Prefix]
    path_id: Optional[int]

    def describe(self) -> str:
        return "%s: %s" % (self.where, self.why)


class Update(NamedTuple):
    """A BGP UPDATE: ``announce`` (NLRIs with ``attrs``) and ``withdraw`` (``(prefix, path_id)``);
    ``skipped``: families present but not handled (e.g. ``ipv4 flow``); ``bad``: NLRIs refused
    (:class:`BadNlri`; treated as withdrawn).  A tuple: one is built per UPDATE on the hot path
    (an attrs class took three times as long)."""

    neighbor: Neighbor
    attrs: Optional[BgpAttrs]
    announce: Tuple[Announce, ...]
    withdraw: Tuple[Tuple[Prefix, int], ...]
    skipped: Tuple[str, ...] = ()
    bad: Tuple[BadNlri, ...] = ()


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
            raise FeedError("%s message: %s" % (_show(kind), _broken(msg, kind))) from None
        raise FeedError("unknown message type %s" % (_show(kind),))

    # pieces --------------------------------------------------------------------------------
    def _neighbor(self, nb: dict) -> Neighbor:
        address, asn = nb["address"], nb["asn"]
        key = (address["peer"], address["local"], asn["peer"], asn["local"])
        try:
            found = self._neighbors.get(key)
        except TypeError:  # an unhashable value (a list): checked below
            found = None
        if found is None:
            peer, local, peer_as, local_as = key
            for name, value in (("address.peer", peer), ("address.local", local)):
                if not isinstance(value, str):
                    raise FeedError("neighbor.%s is %s, not an address string" % (name, _show(value)))
            for name, value in (("asn.peer", peer_as), ("asn.local", local_as)):
                if not _is_asn(value):
                    raise FeedError("neighbor.%s is %s, not an AS number" % (name, _show(value)))
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
            return EndOfRib(neighbor, "%s %s" % (_word(eor["afi"], "eor.afi"), _word(eor["safi"], "eor.safi")))
        update = message["update"]
        announced = update.get("announce", _NOTHING)
        if type(announced) is not dict:
            raise FeedError("update.announce is %s, not an object" % _show(announced))
        skipped: List[str] = []
        announce: List[Announce] = []
        withdraw: List[Tuple[Prefix, int]] = []
        bad: List[BadNlri] = []
        bgp_attrs = None
        for family, by_nexthop in announced.items():
            af = FAMILIES.get(family)
            if af is None:
                skipped.append(family)
                continue
            if bgp_attrs is None:
                bgp_attrs = self._attributes(update.get("attribute", _NOTHING))
            self._announce(af, family, by_nexthop, announce, withdraw, bad)
        if "withdraw" in update:
            withdrawn = update["withdraw"]
            if type(withdrawn) is not dict:
                raise FeedError("update.withdraw is %s, not an object" % _show(withdrawn))
            for family, nlris in withdrawn.items():
                af = FAMILIES.get(family)
                if af is None:
                    skipped.append(family)
                    continue
                self._withdraw(af, family, nlris, withdraw, bad)
        if bad or type(bgp_attrs) is FeedError:
            if type(bgp_attrs) is FeedError:  # bad path attributes: every NLRI announced is withdrawn
                why = "%s (its NLRIs are treated as withdrawn)" % bgp_attrs
                bad.extend(BadNlri("update.attribute", why, a.prefix, a.path_id) for a in announce)
                withdraw.extend((a.prefix, a.path_id) for a in announce)
                announce, bgp_attrs = [], None
            return Update(neighbor, bgp_attrs, tuple(announce), tuple(withdraw), tuple(skipped), tuple(bad))
        # Update(...) without a call (its generated __new__ costs more)
        return _new_tuple(Update, (neighbor, bgp_attrs, tuple(announce), tuple(withdraw) if withdraw else (),
                                   tuple(skipped) if skipped else (), ()))

    def _announce(self, af: int, family: str, by_nexthop: dict, out: List[Announce],
                  withdraw: List[Tuple[Prefix, int]], bad: List[BadNlri]) -> None:
        """``{next hop: [nlri, ...]}`` -> announcements; an NLRI under both a global and a
        link-local next hop is one announcement carrying both (RFC 2545).

        Hot path: one next hop (every IPv4 UPDATE) and NLRIs whose prefix was seen before cost
        two dict lookups each; an NLRI listed twice, or anything wrong, goes the careful way
        (:meth:`_announce_merged`), which refuses only the bad NLRIs."""
        if type(by_nexthop) is not dict or len(by_nexthop) != 1:
            self._announce_merged(af, family, by_nexthop, out, withdraw, bad)
            return
        ((nh_text, nlris),) = by_nexthop.items()
        if type(nlris) is not list:
            self._announce_merged(af, family, by_nexthop, out, withdraw, bad)
            return
        start = len(out)
        prefixes = self._prefixes[af]
        append = out.append
        try:
            nexthop = self._address(nh_text)
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
        except (FeedError, KeyError, TypeError):  # a bad NLRI (or an unhashable one): the careful way
            del out[start:]
            self._announce_merged(af, family, by_nexthop, out, withdraw, bad)
            return
        count = len(out) - start
        if count > 1 and len({(a.prefix, a.path_id) for a in out[start:]}) != count:
            del out[start:]  # an NLRI listed twice: merged as below
            self._announce_merged(af, family, by_nexthop, out, withdraw, bad)

    def _announce_merged(self, af: int, family: str, by_nexthop, out: List[Announce],
                         withdraw: List[Tuple[Prefix, int]], bad: List[BadNlri]) -> None:
        if type(by_nexthop) is not dict:
            bad.append(BadNlri("update.announce.%s" % family, "%s, not an object of next hops" % _show(by_nexthop),
                               None, None))
            return
        seen: Dict[Tuple[Prefix, int], int] = {}
        for nh_text, nlris in by_nexthop.items():
            where = "update.announce.%s[%s]" % (family, escape_text(nh_text))
            try:
                nexthop: Optional[Tuple[int, bytes]] = self._address(nh_text)
                nh_error = ""
            except FeedError as exc:
                nexthop, nh_error = None, "next hop %s (its NLRIs are treated as withdrawn)" % exc
            if type(nlris) is not list:
                bad.append(BadNlri(where, "%s, not a list of NLRIs" % _show(nlris), None, None))
                continue
            ll = nexthop is not None and is_link_local(nexthop[1])
            for i, nlri in enumerate(nlris):
                try:
                    prefix, path_id = self._nlri(af, nlri)
                except FeedError as exc:
                    bad.append(BadNlri("%s[%d]" % (where, i), str(exc), self._readable(af, nlri), None))
                    continue
                if nexthop is None:
                    bad.append(BadNlri("%s[%d]" % (where, i), nh_error, prefix, path_id))
                    withdraw.append((prefix, path_id))
                    continue
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

    def _withdraw(self, af: int, family: str, nlris, out: List[Tuple[Prefix, int]], bad: List[BadNlri]) -> None:
        """``[nlri, ...]`` of ``update.withdraw.<family>`` -> ``(prefix, path id)``; a bad NLRI
        is listed in ``bad`` (with its prefix if readable: every path of it is withdrawn)."""
        start = len(out)
        if type(nlris) is list:
            try:
                for nlri in nlris:
                    out.append(self._nlri(af, nlri))
                return
            except FeedError:
                del out[start:]
        where = "update.withdraw.%s" % family
        if type(nlris) is not list:
            bad.append(BadNlri(where, "%s, not a list of NLRIs" % _show(nlris), None, None))
            return
        for i, nlri in enumerate(nlris):
            try:
                out.append(self._nlri(af, nlri))
            except FeedError as exc:
                bad.append(BadNlri("%s[%d]" % (where, i), str(exc), self._readable(af, nlri), None))

    def _nlri(self, af: int, nlri) -> Tuple[Prefix, int]:
        """One NLRI (``{"nlri": "198.51.100.0/24", "path-information": "0.0.0.2"}``, or the
        prefix text alone: ``exabgp.api.compact``) -> ``(prefix, path id)``; FeedError."""
        if type(nlri) is str:  # exabgp.api.compact
            text, path_id = nlri, 0
        elif type(nlri) is dict:
            text = nlri.get("nlri")
            if text is None:
                raise FeedError("no nlri field")
            info = nlri.get("path-information")
            path_id = 0 if info is None else _path_id(info)
        else:
            raise FeedError("nlri %s is not a prefix string" % _show(nlri))
        prefix = self._prefixes[af].get(text) if type(text) is str else None
        if prefix is None:
            prefix = self._new_prefix(af, text)
        return prefix, path_id

    def _readable(self, af: int, nlri) -> Optional[Prefix]:
        """The prefix of a refused NLRI if it can be read (its path id may be what is wrong)."""
        text = nlri if type(nlri) is str else nlri.get("nlri") if type(nlri) is dict else None
        try:
            return self._new_prefix(af, text)
        except FeedError:
            return None

    def _new_prefix(self, af: int, text) -> Prefix:
        """A prefix not in ``af``'s cache: checked (its family too), then cached for ``af``.
        The length is plain ASCII digits (``int()`` would take ``+24``, `` 24``, ``2_4`` and
        other scripts' digits)."""
        if type(text) is not str:
            raise FeedError("nlri %s is not a prefix string" % _show(text))
        address, slash, length = text.partition("/")
        family = AF_INET6 if ":" in address else AF_INET
        try:
            packed = socket.inet_pton(family, address)
        except (OSError, ValueError):
            raise FeedError("nlri %s is not a prefix" % _show(text)) from None
        bits = len(packed) * 8
        if not slash:
            plen = bits
        elif length.isdigit() and length.isascii() and len(length) <= 3:
            plen = int(length)
        else:
            raise FeedError("nlri %s is not a prefix (length %s is not a number)" % (_show(text), _show(length)))
        host_route = plen == bits  # no host bits; the usual case in a large table
        if not host_route and plen > bits:
            raise FeedError("nlri %s is not a prefix (length %d)" % (_show(text), plen))
        if family != af:
            raise FeedError("nlri %s does not belong to %s" % (_show(text), FAMILY_NAMES[af]))
        if not host_route and _host_bits(packed, plen):
            raise FeedError("nlri %s has host bits set" % (_show(text),))
        prefix = (family, packed, plen)
        cache = self._prefixes[af]
        if len(cache) < 1 << 20:  # per family (a full IPv4 table and a full IPv6 one fit)
            cache[text] = prefix
        return prefix

    def _address(self, text) -> Tuple[int, bytes]:
        found = self._addr.get(text)
        if found is None:
            if type(text) is not str:
                raise FeedError("next hop %s is not an address string" % _show(text))
            family = AF_INET6 if ":" in text else AF_INET
            try:
                found = (family, socket.inet_pton(family, text))
            except (OSError, ValueError):
                raise FeedError("%s is not an IP address" % _show(text)) from None
            if len(self._addr) < 1 << 16:
                self._addr[text] = found
        return found

    def _attributes(self, attr: dict) -> Union[BgpAttrs, FeedError]:
        """``update.attribute`` -> :class:`BgpAttrs`, or the FeedError naming what is wrong
        (returned: the UPDATE's NLRIs are then withdrawn, RFC 7606 treat-as-withdraw)."""
        if type(attr) is not dict:
            return FeedError("update.attribute is %s, not an object" % _show(attr))
        origin = attr.get("origin", "igp")
        if type(origin) is not str or origin not in ORIGINS:
            return FeedError("update.attribute.origin %s is not igp, egp or incomplete" % _show(origin))
        med = attr.get("med")
        local_pref = attr.get("local-preference")
        if med is not None and not _is_u32(med):
            return FeedError("update.attribute.med %s is not a 32-bit unsigned integer" % _show(med))
        if local_pref is not None and not _is_u32(local_pref):
            return FeedError("update.attribute.local-preference %s is not a 32-bit unsigned integer" % _show(local_pref))
        raw_path = attr.get("as-path", ())
        try:
            path, length = _as_path(raw_path)
        except FeedError as exc:
            return FeedError("update.attribute.as-path: %s" % exc)
        except (KeyError, TypeError, AttributeError, ValueError):
            return FeedError("update.attribute.as-path %s is not an AS path" % _show(raw_path))
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
        return Refresh(neighbor, "%s %s" % (_word(rr["afi"], "route-refresh.afi"), _word(rr["safi"], "route-refresh.safi")),
                       subtype)


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
                raise FeedError("segment %s is not a list of AS numbers" % _show(seg))
            if element == "as-sequence":
                path.extend(asns)
                length += len(asns)
            elif element == "as-set":
                path.extend(asns)
                length += 1 if asns else 0
            elif element not in ("confed-sequence", "confed-set", "as-confed-sequence", "as-confed-set"):
                raise FeedError("unknown segment type %s" % _show(element))
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
                raise FeedError("element %s is not an AS number" % _show(item))
        return tuple(path), length
    raise FeedError("%s, not a list or object" % _show(value))


def _is_asn(value) -> bool:
    return type(value) is int and 0 <= value <= 0xFFFFFFFF


_is_u32 = _is_asn


def _word(value, where: str) -> str:
    if type(value) is not str or not value or len(value) > 32 or not value.isprintable():
        raise FeedError("%s %s is not an AFI/SAFI name" % (where, _show(value)))
    return value


def _path_id(info) -> int:
    """``path-information`` (RFC 7911 path identifier, a 32-bit unsigned integer) as ExaBGP
    writes it: a dotted quad (``"0.0.0.2"``, strict: four decimal octets, no leading zeros, no
    spaces) or a JSON integer in 0..2**32-1.  Anything else (a float, ``1e400``, a boolean, a
    sign, another string) is a FeedError naming the value."""
    if type(info) is str:
        try:
            return _U32BE(_inet_pton(AF_INET, info))[0]
        except (OSError, ValueError):
            pass
    elif type(info) is int and 0 <= info <= 0xFFFFFFFF:
        return info
    raise FeedError("path-information %s is not a 32-bit unsigned integer" % _show(info))


_inet_pton = socket.inet_pton
_U32BE = struct.Struct("!I").unpack
_KINDS = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean",
          type(None): "null"}
_SHOWN = 60  # characters of a value a message quotes


def _show(value) -> str:
    """A JSON value for a message: a scalar as its repr (``'abc'``, ``1e400`` -> ``inf``; control
    bytes escaped by repr), cut to _SHOWN characters; an object or a list by its kind."""
    if type(value) is dict or type(value) is list:
        return _KINDS[type(value)]
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


_MISSING = object()


def _broken(msg: dict, kind) -> str:
    """Names the first field of ``msg`` whose structure is wrong (the message's own decoder
    failed on it): ``neighbor.message.update is a list, not an object``.  Cold path."""
    def check(parent, path: str, key: str, want=dict):
        value = parent.get(key, _MISSING) if type(parent) is dict else _MISSING
        if value is _MISSING:
            raise _Found("%s.%s is missing" % (path, key) if path else "%s is missing" % key)
        if want is not None and type(value) is not want:
            raise _Found("%s%s is %s, not %s" % (path + "." if path else "", key, _KINDS.get(type(value), "a value"),
                                                 _KINDS[want]))
        return value

    try:
        nb = check(msg, "", "neighbor")
        address, asn = check(nb, "neighbor", "address"), check(nb, "neighbor", "asn")
        for sub in ("peer", "local"):
            check(address, "neighbor.address", sub, None)
            check(asn, "neighbor.asn", sub, None)
        if kind == "update":
            message = check(nb, "neighbor", "message")
            if "eor" in message:
                eor = check(message, "neighbor.message", "eor")
                check(eor, "neighbor.message.eor", "afi", None)
                check(eor, "neighbor.message.eor", "safi", None)
            else:
                update = check(message, "neighbor.message", "update")
                for part in ("announce", "withdraw", "attribute"):
                    if part in update:
                        check(update, "update", part)
        elif kind == "state":
            check(nb, "neighbor", "state", None)
        elif kind == "refresh":
            rr = nb.get("route-refresh", (nb.get("message") or {}).get("route-refresh"))
            if type(rr) is dict:
                check(rr, "route-refresh", "afi", None)
                check(rr, "route-refresh", "safi", None)
    except _Found as found:
        return str(found)
    return "malformed (a field of an unexpected type)"


class _Found(Exception):
    pass


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


__all__ = ["Parser", "Version", "FeedError", "BgpAttrs", "Neighbor", "PeerState", "Announce", "Update", "BadNlri",
           "EndOfRib",
           "Refresh", "Shutdown", "Ack", "FAMILIES", "is_link_local", "route_refresh_command"]
