"""The FPM feed: FRR zebra's FIB, streamed over the Forwarding Plane Manager protocol, as a RIB
source.

zebra (loaded with ``-M dplane_fpm_nl``, configured with ``fpm address 127.0.0.1 port 2620``)
dials a TCP server and streams every route of its FIB, as netlink messages, whatever protocol
computed it (OSPF, BGP, static, connected).  kernelsync is that server.  It keeps the routes of
the configured table and protocols (default: main table, ``ospf``), turns them into RIB paths
(:func:`kernelsync.feeds.routesource.route_paths`) and installs them in the table it owns, with its
own protocol, as shared nexthop groups, merged with the other feeds by admin distance.

**The stream** (FRR ``fpm/fpm.h``; ``zebra/dplane_fpm_nl.c``): frames of a 4-byte header, ``u8
version`` (1), ``u8 type`` (1: netlink; 2, protobuf, is not supported), ``u16 length`` in
network byte order, header included, then one or more netlink messages (``struct nlmsghdr``,
host byte order).  Used: RTM_NEWROUTE/RTM_DELROUTE (``struct rtmsg`` + RTA_*, RTA_MULTIPATH or
RTA_NH_ID) and, with ``fpm use-next-hop-groups`` (FRR 8.4's default), RTM_NEWNEXTHOP/
RTM_DELNEXTHOP (``struct nhmsg`` + NHA_*).  A replace is RTM_DELROUTE + RTM_NEWROUTE in one
frame; a frame is applied whole, so a replace never leaves a moment without the route.  Other
message types (neighbours, links) and families (MPLS) are counted and ignored.  zebra's
nexthop ids live in the connection only: nothing of zebra's numbering reaches the kernel.

**Each connection is a mark-and-sweep window.**  zebra replays its whole FIB whenever it
(re)connects.  On connect the feed's routes become stale; the replay is collected and, once the
stream has been quiet for ``replay_quiet`` seconds, applied in one go: what came back unchanged
costs no kernel write, what did not come back is swept.  After that, changes apply as they come:
**additions and replaces at once** (no added convergence; a replace is DEL + NEW in one frame),
**deletions once the burst is over**: ``settle`` seconds after its last deletion
(:func:`kernelsync.feeds.base.settle_due`), in one batch.

**An orderly stop of FRR is not a withdrawal.**  FRR stops ospfd first: zebra withdraws every
OSPF route over FPM, and closes the connection when it stops itself, seconds later.  A burst of
deletions that leaves zebra with no route of a protocol it had routes of is taken for that
daemon stopping: those routes are kept as stale for ``hold_time`` (counter ``stops``), the FIB
does not flap, and their return costs no write.  Not within STOP_AFTER_LINK seconds of a link
event that changed a link (the topology took the last path: those deletions are real), nor with
``hold_time = 0``.  A withdrawal of some prefixes while others of the protocol remain applies.

**A frame that cannot be decoded** (its netlink content: see below) is skipped whole, logged
with its bytes and counted (``skipped``); the connection stays, because zebra would send the same
frame again on every reconnect (FRR 8.4 sends nexthop objects of family AF_UNSPEC with a gateway:
refusing those closed the connection every 3 s, for good).  Only a broken FPM header (version,
type, length: the frames can no longer be told apart) closes the connection.

**Losing zebra** (connection closed, reset, or a broken FPM header, which closes the connection
with an error naming the frame): the routes stay installed, stale, for ``hold_time`` seconds
from the loss (a loss during a stale period does not extend it); zebra reconnects within 3 s of
a restart.  While routes are stale, the new connection's state (zebra's FIB filling again as
its daemons reconnect: one leg of an ECMP route first) is held for the stale prefixes until
every one is back and the stream has been quiet for ``replay_quiet``, or until the hold time
ends, when what has not come back is swept: a restart that ends where it began writes nothing.
While zebra stays connected with routes stale (its ospfd stopped), changes of other prefixes
apply meanwhile.  Until the first replay is applied (or ``hold_time``
after start, if zebra never comes), the source is not ready, so the engine deletes nothing it
installed before a restart of kernelsync.

**Re-reading after flaps** (``resync_after_link``, 2 s by default, 0 = off): FRR 8.4's stream
misses updates after link flaps, with nothing else writing to kernelsync's objects (seen in the
lab: after a carrier flap the LAN went back to an ECMP group zebra had sent before, zebra's RIB
had both legs, and the stream's last word was one leg).  FPM has no request to resend, so a link
event makes a re-read owed: once zebra has been quiet for ``resync_after_link`` seconds since
the event, or since its last change within RESYNC_FOLLOW seconds of the event (OSPF converges
seconds after the link, and the update zebra misses is among its changes), the feed closes the
connection; zebra reconnects (within 3 s) and replays.  The debt is paid only by a replay that
began after that much quiet: a link event while zebra is away or replaying, or changes after a
replay, owe another.  A re-read's replay is the truth: applied whole, unchanged routes cost no
write, what it brings is applied as it comes (not at its end), and prefixes zebra no longer has
are withdrawn at its end, at once.  zebra takes about 3 s to
reconnect: meanwhile its own kernel writes of the routes we take (its table and protocols; it
writes its FIB into the kernel too) stand in for the stream, additions and replaces applied at
once (counter ``reread_hints``), so a failure in that gap costs no added convergence; the replay
then is the truth.

**Who may feed the FIB**: a TCP port on the loopback is open to every local user.  A connection
is accepted only from a socket owned by one of ``users`` (default ``frr`` and ``root``; zebra
runs as ``frr``), looked up in ``/proc/net/tcp``; an empty list accepts anyone.  Refused
connections are counted (``refused``) and logged at most once per REFUSED_LOG_INTERVAL seconds
(with how many were refused meanwhile): a local program dialling in a loop cannot fill the log.

**What is decoded is valid**: routes and nexthop objects are decoded strictly
(:func:`kernelsync.kernel.codec.parse_route` with ``strict``): a family other than IPv4, IPv6
(or MPLS, ignored), an address of the wrong length for its family (RTA_DST, RTA_GATEWAY,
RTA_PREFSRC, RTA_SRC, NHA_GATEWAY, the gateways of RTA_MULTIPATH legs, RTA_VIA), a prefix
length beyond 32/128, bits set beyond the prefix length (refused: zebra never sends them, and
the kernel refuses an IPv4 one), a multipath leg running past its attribute or an attribute
past its leg makes the frame one that cannot be decoded (skipped), with the error naming the
field.  An AF_UNSPEC nexthop object with a 4- or 16-byte NHA_GATEWAY takes the family its
length gives (what zebra means).
"""
from __future__ import annotations

import functools
import logging
import os
import pwd
import selectors
import socket
import struct
from typing import Container, Dict, List, Mapping, Optional, Set, Tuple, Union

import attrs

from ..core.links import LinkTable
from ..core.model import KNexthop, KRoute, Path, Prefix, format_prefix
from ..core.port import ResyncNeeded
from ..core.rib import Rib
from ..kernel.codec import (NEXTHOP_MESSAGES, NHMSG, NLA, NLMSGHDR, ROUTE_MESSAGES, RTM_DELROUTE, RTM_NEWNEXTHOP,
                            RTM_NEWROUTE, RTMSG, DecodeError, parse_nexthop, parse_route)
from .base import BaseFeed, KernelChange, settle_due
from .routesource import RouteSource, route_paths

log = logging.getLogger("kernelsync.fpm")

FPM_VERSION = 1  # fpm/fpm.h FPM_PROTO_VERSION
FPM_MSG_TYPE_NETLINK = 1  # FPM_MSG_TYPE_NETLINK (2 = protobuf)
FPM_HEADER = struct.Struct("!BBH")  # version, type, length (header included), network order
#: Nexthop ids FRR 8.4's zebra ignores: those with bit 28 or 29 set are its EVPN layer-2 ids
#: (zebra_evpn_mh.h: NHG_ID_TYPE_POS 28; ``zebra_evpn_mh_is_fdb_nh``): it neither learns kernel
#: nexthop objects there nor routes that use them.  kernelsync's objects in this space are
#: invisible to a zebra on the same host, which otherwise learns them and writes its own view of
#: them back (see the README, FRR).  zebra's own EVPN ids are ``(1 << 28) | n`` and ``(2 << 28) |
#: n`` for small ``n``: stay well above the bottom of each.
ZEBRA_IGNORED_IDS = (0x10000000, 0x3FFFFFFF)
RT_TABLE_MAIN = 254
RTPROT_OSPF = 188  # FRR's route protocol numbers, zebra/rt_netlink.h
READ_BYTES = 256 * 1024
REFUSED_LOG_INTERVAL = 60.0  # seconds between two warnings about refused connections
RESYNC_FOLLOW = 15.0  # seconds after a link event during which route changes put the re-read off
#: Seconds after a link event during which zebra withdrawing every route of a protocol is taken
#: for the topology (the last path gone), not for that protocol's daemon stopping.
STOP_AFTER_LINK = 15.0


@attrs.frozen
class _Shape:
    """What a message kind must look like: its fixed header, its decoder, which attributes
    hold a u32 and which an address (4 or 16 bytes)."""

    what: str
    fixed: int
    parse: object
    u32s: frozenset
    addresses: frozenset


_ROUTE = _Shape("route", RTMSG.size, functools.partial(parse_route, strict=True),
                frozenset((4, 6, 15, 30)),  # RTA_OIF, RTA_PRIORITY, RTA_TABLE, RTA_NH_ID
                frozenset((1, 5)))  # RTA_DST, RTA_GATEWAY
_NEXTHOP = _Shape("nexthop", NHMSG.size, functools.partial(parse_nexthop, strict=True),
                  frozenset((1, 5)),  # NHA_ID, NHA_OIF
                  frozenset((6,)))  # NHA_GATEWAY


def zebra_ignores(id_range: Tuple[int, int]) -> bool:
    """Whether every id of ``id_range`` (inclusive) is one FRR 8.4's zebra ignores."""
    return ZEBRA_IGNORED_IDS[0] <= id_range[0] and id_range[1] <= ZEBRA_IGNORED_IDS[1]


class FpmError(ValueError):
    """The stream broke the FPM framing or carried a netlink message that cannot be decoded;
    the message says which frame and why."""


@attrs.frozen
class FpmFeedConfig:
    """``[feed.fpm]``: listen on ``address``:``port`` (TCP) for zebra; keep routes of ``table``
    whose protocol is in ``protocols`` (numbers; names are resolved by the config) as RIB source
    ``name`` with admin distance ``distance``; ``hold_time``, ``settle`` and ``replay_quiet`` in
    seconds (see the module docstring); ``resync_after_link``: seconds of quiet after link events
    after which zebra's whole FIB is read again (0: never);
    ``users``: user names or uids allowed to connect (empty: anyone)."""

    address: str = "127.0.0.1"
    port: int = 2620
    name: str = "fpm"
    distance: int = 110
    table: int = RT_TABLE_MAIN
    protocols: Tuple[int, ...] = (RTPROT_OSPF,)
    hold_time: float = 60.0
    settle: float = 0.2
    replay_quiet: float = 1.0
    resync_after_link: float = 2.0
    users: Tuple[str, ...] = ("frr", "root")
    where: str = "feed.fpm"


def _changes(stream: "FpmStream") -> int:
    """How many route and nexthop messages the stream has applied (a change since a count)."""
    c = stream.counters
    return c["routes_added"] + c["routes_deleted"] + c["nexthops_added"] + c["nexthops_deleted"]


def _describe(mtype: int, item: Union[KRoute, KNexthop, None]) -> str:
    """A decoded message for the debug log (never raises: the text of a value that cannot be
    described is its repr)."""
    if mtype in ROUTE_MESSAGES:
        if item is None:
            return "route (other family)"
        kind = "NEWROUTE" if mtype == RTM_NEWROUTE else "DELROUTE"
    else:
        kind = "NEWNEXTHOP" if mtype == RTM_NEWNEXTHOP else "DELNEXTHOP"
    try:
        return "%s %s" % (kind, item.describe())
    except Exception:
        return "%s %r" % (kind, item)


def _frame_text(frame: bytes) -> str:
    text = frame[:64].hex()
    return text + ("... (%d bytes)" % len(frame) if len(frame) > 64 else "")


class FpmStream:
    """The state one FPM connection has delivered: zebra's routes of one table and some
    protocols, and its nexthop objects.  Pure: bytes in, changed prefixes out.

    :meth:`feed` takes whatever TCP delivered (any split) and applies every complete frame;
    :meth:`take_dirty` gives the prefixes changed since its last call; :meth:`paths` /
    :meth:`all_paths` turn routes into RIB paths with the current interface names."""

    def __init__(self, table: int, protocols: Tuple[int, ...]) -> None:
        self.table = table
        self.protocols = frozenset(protocols)
        self.buffer = bytearray()
        self.routes: Dict[Prefix, KRoute] = {}  # the routes taken (table and protocols)
        self.nexthops: Dict[int, KNexthop] = {}
        self.users: Dict[int, Set[Prefix]] = {}  # nexthop id -> prefixes whose route names it
        self.groups_of: Dict[int, Set[int]] = {}  # member id -> ids of the groups holding it
        self.dirty: Dict[Prefix, None] = {}
        self.deleted: Dict[Prefix, int] = {}  # prefix -> protocol, of those deleted and not back (all dirty)
        self.per_protocol: Dict[int, int] = {}  # protocol -> how many of self.routes have it
        self.counters = {"frames": 0, "routes_added": 0, "routes_deleted": 0, "nexthops_added": 0,
                         "nexthops_deleted": 0, "ignored": 0, "skipped": 0}
        self.last_error = ""  # why the last frame skipped was skipped

    # decoding ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> int:
        """Append ``data`` and apply every complete frame; returns how many.  A frame whose
        netlink content cannot be decoded is skipped whole (counter ``skipped``, ``last_error``,
        logged with its bytes; a replace in it is not half applied).  FpmError on a broken FPM
        header (version, type, length): the frames cannot be told apart after it, close the
        connection."""
        buf = self.buffer
        buf += data
        offset = done = 0
        try:
            while len(buf) - offset >= 4:
                version, kind, length = FPM_HEADER.unpack_from(buf, offset)
                if version != FPM_VERSION or kind != FPM_MSG_TYPE_NETLINK or length < 4:
                    raise FpmError("frame %d: header version %d, type %d, length %d (want version %d, type %d "
                                   "netlink, length >= 4): %s" % (
                                       self.counters["frames"] + 1, version, kind, length, FPM_VERSION,
                                       FPM_MSG_TYPE_NETLINK, _frame_text(bytes(buf[offset:offset + 64]))))
                if len(buf) - offset < length:
                    break
                frame = bytes(buf[offset + 4:offset + length])
                offset += length
                self.counters["frames"] += 1
                try:
                    self._apply_frame(frame)
                except FpmError as exc:  # the frame's content: the stream's framing is intact
                    self.counters["skipped"] += 1
                    self.last_error = str(exc)
                    log.error("FPM frame %d skipped whole (the connection stays: zebra would send it again on "
                              "every reconnect): %s", self.counters["frames"], exc)
                done += 1
        finally:
            del buf[:offset]
        return done

    def _apply_frame(self, frame: bytes) -> None:
        """Decode every netlink message of the frame first, then apply them: a frame that is
        malformed anywhere changes nothing."""
        messages: List[Tuple[int, object]] = []
        offset, end = 0, len(frame)
        while offset < end:
            if end - offset < NLMSGHDR.size:
                raise self._error(frame, "%d trailing bytes, not a netlink header" % (end - offset))
            length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(frame, offset)
            if length < NLMSGHDR.size or offset + length > end:
                raise self._error(frame, "netlink message at byte %d: length %d does not fit the frame's %d bytes"
                                  % (offset, length, end))
            body, stop = offset + NLMSGHDR.size, offset + length
            if mtype in ROUTE_MESSAGES:
                messages.append((mtype, self._decode(frame, body, stop, _ROUTE)))
            elif mtype in NEXTHOP_MESSAGES:
                nh = self._decode(frame, body, stop, _NEXTHOP)
                if nh is None:
                    raise self._error(frame, "nexthop message without NHA_ID")
                messages.append((mtype, nh))
            else:
                self.counters["ignored"] += 1
            offset += (length + 3) & ~3
        if log.isEnabledFor(logging.DEBUG):
            log.debug("FPM frame %d: %s", self.counters["frames"], "; ".join(_describe(m, i) for m, i in messages))
        for mtype, item in messages:
            if mtype == RTM_NEWROUTE:
                self._route(item, True)
            elif mtype == RTM_DELROUTE:
                self._route(item, False)
            else:
                self._nexthop(item, mtype == RTM_NEWNEXTHOP)

    def _decode(self, frame: bytes, body: int, stop: int, shape: _Shape):
        """Check the message's shape (its attributes tile it exactly; u32 attributes hold 4
        bytes, addresses 4 or 16), then parse it."""
        what, fixed, u32s, addresses = shape.what, shape.fixed, shape.u32s, shape.addresses
        if stop - body < fixed:
            raise self._error(frame, "%s message body of %d bytes, shorter than its %d-byte header"
                              % (what, stop - body, fixed))
        offset = body + fixed
        while offset < stop:
            if stop - offset < 4:
                raise self._error(frame, "%s attribute at byte %d truncated" % (what, offset))
            nla_len, nla_type = NLA.unpack_from(frame, offset)
            if nla_len < 4 or offset + nla_len > stop:
                raise self._error(frame, "%s attribute at byte %d: length %d does not fit" % (what, offset, nla_len))
            nla_type &= 0x3FFF
            if (nla_type in u32s and nla_len != 8) or (nla_type in addresses and nla_len not in (8, 20)):
                raise self._error(frame, "%s attribute %d at byte %d: payload of %d bytes" % (
                    what, nla_type, offset, nla_len - 4))
            offset += (nla_len + 3) & ~3
        try:
            return shape.parse(frame, body, stop)
        except struct.error as exc:
            raise self._error(frame, "%s attribute payload too short (%s)" % (what, exc)) from None
        except DecodeError as exc:
            raise self._error(frame, "%s message at byte %d: %s" % (what, body - NLMSGHDR.size, exc)) from None

    def _error(self, frame: bytes, why: str) -> FpmError:
        return FpmError("frame %d: %s: %s" % (self.counters["frames"], why, _frame_text(frame)))

    # state ---------------------------------------------------------------------------------
    def _route(self, route: Optional[KRoute], new: bool) -> None:
        if route is None:  # another family (MPLS)
            self.counters["ignored"] += 1
            return
        if route.table != self.table:
            self.counters["ignored"] += 1
            return
        prefix = route.prefix
        if new and route.protocol in self.protocols:
            self.counters["routes_added"] += 1
            self._forget(prefix)
            self.routes[prefix] = route
            self.per_protocol[route.protocol] = self.per_protocol.get(route.protocol, 0) + 1
            self.deleted.pop(prefix, None)
            if route.nh_id:
                self.users.setdefault(route.nh_id, set()).add(prefix)
            self.dirty[prefix] = None
            return
        # a deletion, or the prefix now comes from a protocol we do not take: not ours any more
        if new:
            self.counters["ignored"] += 1
        old = self._forget(prefix)
        if old is not None:
            self.counters["routes_deleted"] += 1
            self.deleted[prefix] = old.protocol
            self.dirty[prefix] = None

    def _forget(self, prefix: Prefix) -> Optional[KRoute]:
        old = self.routes.pop(prefix, None)
        if old is None:
            return None
        left = self.per_protocol[old.protocol] - 1
        if left:
            self.per_protocol[old.protocol] = left
        else:
            del self.per_protocol[old.protocol]
        if old.nh_id:
            users = self.users.get(old.nh_id)
            if users is not None:
                users.discard(prefix)
                if not users:
                    del self.users[old.nh_id]
        return old

    def _nexthop(self, nh: KNexthop, new: bool) -> None:
        old = self.nexthops.get(nh.id)
        if new:
            self.counters["nexthops_added"] += 1
            if old == nh:
                return
            self.nexthops[nh.id] = nh
        else:
            self.counters["nexthops_deleted"] += 1
            if old is None:
                return
            del self.nexthops[nh.id]
        if old is not None:
            for member, _w in old.group:
                self.groups_of.get(member, set()).discard(nh.id)
        if new:
            for member, _w in nh.group:
                self.groups_of.setdefault(member, set()).add(nh.id)
        for nh_id in (nh.id, *self.groups_of.get(nh.id, ())):
            for prefix in self.users.get(nh_id, ()):
                self.dirty[prefix] = None

    def take_dirty(self) -> Dict[Prefix, None]:
        """Every prefix changed since the last take (deleted ones included)."""
        dirty, self.dirty = self.dirty, {}
        self.deleted.clear()
        return dirty

    def take_present(self, held: Container[Prefix] = ()) -> List[Prefix]:
        """The changed prefixes zebra has a route for (additions, replaces, nexthop changes),
        except those in ``held``; the deletions stay pending."""
        if not self.has_present():
            return []
        taken = [p for p in self.dirty if p not in self.deleted and p not in held]
        for prefix in taken:
            del self.dirty[prefix]
        return taken

    def has_present(self) -> bool:
        """Whether a changed prefix is not a deletion."""
        return len(self.dirty) > len(self.deleted)

    def mark_all_dirty(self) -> None:
        """Every route is looked at again (interface names changed)."""
        for prefix in self.routes:
            self.dirty[prefix] = None

    def paths(self, prefix: Prefix, ifnames: Mapping[int, str]) -> Optional[Tuple[Path, ...]]:
        """The RIB paths of ``prefix``; None if zebra has no route for it that we take, or the
        route cannot be expressed (unknown device or nexthop object, not unicast)."""
        route = self.routes.get(prefix)
        return None if route is None else route_paths(route, self.nexthops, ifnames)

    def all_paths(self, ifnames: Mapping[int, str]) -> Tuple[Dict[Prefix, Tuple[Path, ...]], List[Prefix]]:
        """``(prefix -> paths, prefixes that cannot be expressed)`` for the whole state."""
        good: Dict[Prefix, Tuple[Path, ...]] = {}
        bad: List[Prefix] = []
        for prefix, route in self.routes.items():
            paths = route_paths(route, self.nexthops, ifnames)
            if paths is None:
                bad.append(prefix)
            else:
                good[prefix] = paths
        return good, bad


# ---------------------------------------------------------------------------------------------
# who is at the other end of a loopback connection

def _proc_addr(family: int, host: str, port: int) -> str:
    """An address as ``/proc/net/tcp{,6}`` writes it: the address's 32-bit words in host byte
    order, in hex, then ``:PORT``."""
    raw = socket.inet_pton(family, host)
    words = struct.unpack("=%dI" % (len(raw) // 4), raw)
    return "".join("%08X" % w for w in words) + ":%04X" % port


def tcp_peer_uid(conn: socket.socket) -> Optional[int]:
    """The uid owning the other end of an accepted TCP connection from this host (and network
    namespace), from ``/proc/net/tcp{,6}``; None if it is not found there (a remote peer)."""
    family = conn.family
    peer = conn.getpeername()
    local = conn.getsockname()
    want = (_proc_addr(family, peer[0], peer[1]), _proc_addr(family, local[0], local[1]))
    path = "/proc/net/tcp" if family == socket.AF_INET else "/proc/net/tcp6"
    with open(path) as fh:
        next(fh, None)
        for line in fh:
            fields = line.split()
            if len(fields) > 7 and (fields[1], fields[2]) == want:
                return int(fields[7])
    return None


def _uid_of(user: str) -> Optional[int]:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


# ---------------------------------------------------------------------------------------------

class FpmFeed(BaseFeed):
    """``[feed.fpm]``: the TCP server and the RIB source (see the module docstring).
    ``links``: the link table (read only: interface names of zebra's ifindexes); ``kernel``: the
    daemon's request socket (``dump_nexthops``), to read zebra's own kernel writes during a
    re-read (None: not read)."""

    def __init__(self, rib: Rib, cfg: FpmFeedConfig, links: LinkTable, kernel=None) -> None:
        self.cfg = cfg
        self.kernel = kernel
        # zebra's own kernel writes stand in for its stream during a re-read
        self.follows_routes = kernel is not None and cfg.resync_after_link > 0
        self.name = cfg.name
        self.links = links
        self.source = RouteSource(rib, cfg.name, cfg.distance, cfg.hold_time)
        self.sel: Optional[selectors.BaseSelector] = None
        self.listener: Optional[socket.socket] = None
        self.conn: Optional[socket.socket] = None
        self.peer = ""
        self.stream: Optional[FpmStream] = None
        self.replaying = False
        self.full = False  # the next commit applies zebra's whole state (a replay ended)
        self.last_frame = 0.0
        self._dirty_since: Optional[float] = None  # when the changes not applied yet began to come
        self.deleted_at = 0.0  # when the first deletion not applied yet came
        self.deleted_last = 0.0  # and the last one
        self.started = 0.0
        self.reread_owed = False  # zebra's FIB is to be read again (link events since the last re-read)
        self.quiet_from = 0.0  # the re-read waits for zebra to be quiet since then (last link event or change)
        self.replay_started = 0.0  # when the current connection came
        self.rereading = False  # the current connection is our re-read: its replay is the truth, nothing held
        self.gap_hints: Dict[Prefix, KRoute] = {}  # zebra's kernel writes during a re-read, not applied yet
        self.link_change_at = float("-inf")  # the last link event that changed a link's usability
        self.unusable: Set[Prefix] = set()  # prefixes whose route could not be expressed (logged once)
        self.counters = {"connections": 0, "refused": 0, "disconnects": 0, "malformed": 0, "replays": 0,
                         "resyncs": 0, "stops": 0, "reread_hints": 0}
        self.last_error = ""
        self.refused_log_at = 0.0  # the next refused connection is logged from then on
        self.refused_unlogged = 0  # connections refused since the last warning

    # setup ---------------------------------------------------------------------------------
    def retime(self, cfg: FpmFeedConfig) -> None:
        """A configuration reload changed this feed's times (``hold_time``, ``settle``,
        ``replay_quiet``, ``resync_after_link`` staying above 0; nothing else): used from the
        next time each one starts (routes already stale keep their end)."""
        self.cfg = cfg
        self.source.hold_time = cfg.hold_time

    def start(self, sel: selectors.BaseSelector, now: float) -> None:
        self.sel = sel
        self.started = now
        family = socket.AF_INET6 if ":" in self.cfg.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.cfg.address, self.cfg.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, "%s: cannot listen on %s port %d: %s" % (
                self.cfg.where, self.cfg.address, self.cfg.port, exc.strerror)) from None
        sock.listen(4)
        self.listener = sock
        sel.register(sock, selectors.EVENT_READ, self._on_accept)
        log.info("%s: waiting for zebra's FPM connection on %s port %d (table %d, protocols %s -> source %s, "
                 "distance %d)", self.cfg.where, self.cfg.address, self.cfg.port, self.cfg.table,
                 ",".join(map(str, self.cfg.protocols)), self.cfg.name, self.cfg.distance)

    def close(self) -> None:
        self._drop(None, "")
        if self.listener is not None:
            if self.sel is not None:
                self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None

    # connections ---------------------------------------------------------------------------
    def _allowed(self, conn: socket.socket) -> Tuple[bool, str]:
        if not self.cfg.users:
            return True, "any user"
        try:
            uid = tcp_peer_uid(conn)
        except OSError as exc:
            return False, "owner unknown (%s)" % exc
        if uid is None:
            return False, "not a local socket"
        allowed = {_uid_of(u) for u in self.cfg.users}
        return uid in allowed, "uid %d" % uid

    def _on_accept(self, now: float) -> None:
        try:
            conn, addr = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        peer = "%s port %d" % (addr[0], addr[1])
        ok, who = self._allowed(conn)
        if not ok:
            conn.close()
            self._refused(now, peer, who)
            return
        if self.conn is not None:
            self._drop(now, "a new connection from %s replaces it" % peer)
        conn.setblocking(False)
        self.conn = conn
        self.peer = peer
        self.stream = FpmStream(self.cfg.table, self.cfg.protocols)
        self.replaying = True
        self.last_frame = self.replay_started = now
        self.counters["connections"] += 1
        self.sel.register(conn, selectors.EVENT_READ, self._on_readable)
        log.info("%s: zebra connected from %s (%s): collecting its FIB replay", self.cfg.where, peer, who)

    def _refused(self, now: float, peer: str, who: str) -> None:
        """Count a refused connection; warn at most once per REFUSED_LOG_INTERVAL."""
        self.counters["refused"] += 1
        if now < self.refused_log_at:
            self.refused_unlogged += 1
            return
        more = self.refused_unlogged
        self.refused_unlogged = 0
        self.refused_log_at = now + REFUSED_LOG_INTERVAL
        log.warning("%s: connection from %s (%s) refused: only %s may feed the FIB (users)%s", self.cfg.where, peer,
                    who, ", ".join(self.cfg.users),
                    "; %d more refused since the last report" % more if more else "")

    def _drop(self, now: Optional[float], why: str) -> None:
        """Close the connection; the routes stay, stale, for the hold time (``now`` None: at
        exit, nothing to keep)."""
        conn = self.conn
        if conn is None:
            return
        self.conn = None
        self.stream = None
        self.replaying = self.full = self.rereading = False
        if self.sel is not None:
            self.sel.unregister(conn)
        conn.close()
        if now is None:
            return
        self.counters["disconnects"] += 1
        kept = len(self.source.routes) + len(self.source.stale)
        log.warning("%s: connection from %s closed: %s; keeping %d routes as stale for %.0f s", self.cfg.where,
                    self.peer, why, kept, self.cfg.hold_time)
        self.source.lost(now)

    def _on_readable(self, now: float) -> None:
        conn, stream = self.conn, self.stream
        if conn is None or stream is None:
            return
        while True:
            try:
                data = conn.recv(READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._drop(now, "read failed: %s" % (os.strerror(exc.errno) if exc.errno else exc))
                return
            if not data:
                self._drop(now, "zebra closed it")
                return
            try:
                skipped = stream.counters["skipped"]
                had_deleted = bool(stream.deleted)
                deletions = stream.counters["routes_deleted"]
                changes = _changes(stream)
                if stream.feed(data):
                    self.last_frame = now
                    if stream.dirty and self._dirty_since is None:
                        self._dirty_since = now  # a batch's first change: the feed-to-kernel latency
                    if stream.counters["skipped"] != skipped:
                        self.last_error = stream.last_error
                    if stream.deleted and stream.counters["routes_deleted"] != deletions:
                        self.deleted_last = now
                        if not had_deleted:
                            self.deleted_at = now
                    if (now - self.link_change_at <= RESYNC_FOLLOW and not self.replaying
                            and self.cfg.resync_after_link > 0 and _changes(stream) != changes):
                        # routing is still converging after the link event (OSPF's updates come
                        # seconds later, and the one zebra misses may be among them): a re-read
                        # is owed, once zebra has been quiet since this change
                        self.reread_owed = True
                        self.quiet_from = now
            except FpmError as exc:
                self.counters["malformed"] += 1
                self.last_error = str(exc)
                log.error("%s: malformed FPM stream from %s, closing the connection: %s", self.cfg.where,
                          self.peer, exc)
                self._drop(now, "malformed frame")
                return
            if len(data) < READ_BYTES:
                return

    # kernel --------------------------------------------------------------------------------
    def on_kernel_change(self, change: KernelChange, now: float) -> None:
        if self.rereading:
            self._collect_hints(change)
        if not change.link_event:
            return
        if change.lost or change.links.changed:  # not notifications that changed no link's usability
            self.link_change_at = now
            if self.cfg.resync_after_link > 0:
                self.reread_owed = True
                self.quiet_from = now
        if change.links is not None and change.links.names_changed and self.stream is not None:
            self.stream.mark_all_dirty()  # a device came, went or was renamed: look at every route again

    def _collect_hints(self, change: KernelChange) -> None:
        """During a re-read (zebra away, then replaying), zebra's own kernel writes of the routes
        we take (table and protocols) stand in for its stream (see the module docstring)."""
        for event in change.routes:
            route = event.route
            if not event.deleted and route.table == self.cfg.table and route.protocol in self.cfg.protocols:
                self.gap_hints[route.prefix] = route

    def _apply_hints(self) -> None:
        hints, self.gap_hints = self.gap_hints, {}
        if not self.rereading or self.kernel is None:
            return
        nexthops: Mapping[int, KNexthop] = {}
        if any(r.nh_id for r in hints.values()):
            try:
                nexthops = self.kernel.dump_nexthops()
            except ResyncNeeded as exc:  # the replay brings the truth anyway
                log.warning("%s: reading zebra's nexthop objects failed (%s): its kernel writes during the re-read are "
                            "left to the replay", self.cfg.where, exc)
                return
        used = 0
        for prefix, route in hints.items():
            paths = route_paths(route, nexthops, self.links.names)
            if paths is not None:
                self.source.update(prefix, paths)
                used += 1
        self.counters["reread_hints"] += used
        log.info("%s: %d of zebra's kernel writes applied while its FIB is re-read", self.cfg.where, used)

    # cycle ---------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        times: List[float] = []
        if self.gap_hints:
            times.append(0.0)
        stale = self.source.deadline()
        if stale is not None:
            times.append(stale)
        stream = self.stream
        if not self.source.rib.ready.get(self.cfg.name) and not self.replaying:
            times.append(self.started + self.cfg.hold_time)
        if self.reread_owed and self.conn is not None and not self.replaying:
            times.append(self.quiet_from + self.cfg.resync_after_link)
        if self.replaying:
            times.append(self.last_frame + self.cfg.replay_quiet)
            if self.rereading and stream is not None and stream.has_present():
                times.append(0.0)  # a re-read's replay is the truth: what it brings is applied at once
        elif stream is not None and (stream.dirty or self.full):
            settled = self._settled(stream)
            if self.source.stale and not self.rereading:
                if self.source.all_back(stream.routes):  # recovering: held until zebra is quiet
                    times.append(max(self.last_frame + self.cfg.replay_quiet, settled or 0.0))
                if not self.full and any(p not in stream.deleted and p not in self.source.stale for p in stream.dirty):
                    times.append(0.0)
            elif self.full or not stream.deleted:
                times.append(settled or 0.0)
            else:
                times.append(0.0 if stream.has_present() else settled)
        return min(times) if times else None

    def commit(self, now: float) -> None:
        if self.gap_hints:
            self._apply_hints()
        if (self.reread_owed and self.conn is not None and not self.replaying
                and now >= self.quiet_from + self.cfg.resync_after_link):
            self.counters["resyncs"] += 1
            self._drop(now, "re-reading zebra's whole FIB: quiet for %.1f s after link events (resync_after_link); "
                            "zebra replays it when it reconnects" % self.cfg.resync_after_link)
            self.rereading = True
        stream = self.stream
        if (stream is not None and not self.replaying and self.source.stale_until is not None
                and now >= self.source.stale_until):
            # the hold time ends while zebra is here: what it has now is the truth, held or not
            log.info("%s: hold time over", self.cfg.where)
            stream.take_dirty()
            self._apply_all(stream)
            return
        swept = self.source.tick(now)
        if swept:
            log.info("%s: hold time over: %d stale routes swept", self.cfg.where, swept)
        if (not self.source.rib.ready.get(self.cfg.name) and not self.replaying
                and now >= self.started + self.cfg.hold_time):
            log.warning("%s: no FIB replay from zebra within %.0f s of start: going on without it", self.cfg.where,
                        self.cfg.hold_time)
            self.source.set_ready()
        if stream is None:
            return
        if self.replaying:
            if now < self.last_frame + self.cfg.replay_quiet:
                if self.rereading:  # the truth: additions and replaces at once, the sweep at its end
                    self._apply(stream.take_present(), stream)
                return
            self.replaying = False
            self.full = True
            self.counters["replays"] += 1
            if self.reread_owed and self.replay_started >= self.quiet_from + self.cfg.resync_after_link:
                self.reread_owed = False  # zebra had been quiet that long when this replay began: it is the re-read
            log.info("%s: FIB replay from %s over (%d frames, %d routes taken, %d nexthop objects)", self.cfg.where,
                     self.peer, stream.counters["frames"], len(stream.routes), len(stream.nexthops))
        settled = self._settled(stream)
        held = self.source.stale and not self.rereading and not (
            self.source.all_back(stream.routes) and now >= self.last_frame + self.cfg.replay_quiet)
        if held or (settled is not None and now < settled):
            # deletions settle (zebra may be stopping: the connection closes, or its daemons'
            # routes all go), and while routes are stale zebra's partial states of them are held
            # until every one is back; additions and replaces of the rest are applied at once
            if not self.full:
                self._apply(stream.take_present(self.source.stale if held else ()), stream)
            return
        deleted = dict(stream.deleted)
        dirty = stream.take_dirty()
        if self.full:
            self._apply_all(stream)
            return
        kept = self._stopped(stream, deleted, now)
        self._apply([p for p in dirty if p not in kept], stream)

    def _settled(self, stream: FpmStream) -> Optional[float]:
        """When the pending deletions are due (None: there are none)."""
        if not stream.deleted:
            return None
        return settle_due(self.deleted_at, self.deleted_last, self.cfg.settle)

    def _applied(self, stream: FpmStream) -> None:
        """Routes went to the RIB: mark the batch with its first change's arrival
        (:attr:`input_at`, the daemon's feed-to-kernel latency); a batch is over when nothing
        of the stream waits any more."""
        since = self._dirty_since
        if since is not None:
            self.mark_input(since)
            if not stream.dirty:
                self._dirty_since = None

    def _apply(self, prefixes: List[Prefix], stream: FpmStream) -> None:
        if prefixes:
            self._applied(stream)
        for prefix in prefixes:
            paths = stream.paths(prefix, self.links.names)
            if paths is not None:
                self.source.update(prefix, paths)
                self.unusable.discard(prefix)
                continue
            self.source.withdraw(prefix)
            if prefix in stream.routes:
                self._unusable(prefix, stream)

    def _stopped(self, stream: FpmStream, deleted: Dict[Prefix, int], now: float) -> Set[Prefix]:
        """A burst of deletions that took every route of a protocol zebra gave us is that
        protocol's daemon stopping (FRR stops ospfd first, zebra withdraws its routes, and closes
        the connection seconds later), not a withdrawal: keep them stale for ``hold_time``
        (:meth:`RouteSource.keep_stale`) and return them.  Not within STOP_AFTER_LINK seconds
        of a link event (the topology took the last path), nor with ``hold_time`` 0."""
        if self.cfg.hold_time <= 0 or now - self.link_change_at < STOP_AFTER_LINK:
            return set()
        protocols = {proto for proto in deleted.values() if proto not in stream.per_protocol}
        gone = {p for p, proto in deleted.items() if proto in protocols and p in self.source.routes}
        if not gone:
            return set()
        self.counters["stops"] += 1
        self.source.keep_stale(gone, now)
        log.warning("%s: zebra withdrew every route of protocol %s at once (its daemon stopped?): keeping %d "
                    "routes as stale for %.0f s", self.cfg.where, ",".join(map(str, sorted(protocols))), len(gone),
                    self.cfg.hold_time)
        return gone

    def _apply_all(self, stream: FpmStream) -> None:
        """zebra's whole state (after a replay, or a recovery): make it the source's; sweep
        what did not come back."""
        self.full = self.rereading = False
        self._applied(stream)
        routes, bad = stream.all_paths(self.links.names)
        self.unusable = set()
        for prefix in bad:
            self._unusable(prefix, stream)
        before = {**self.source.stale, **self.source.routes}
        unchanged = sum(1 for p, paths in routes.items() if before.get(p) == paths)
        self.source.replace_all(routes)
        swept = self.source.sweep() if self.source.stale_until is not None else 0
        self.source.set_ready()
        log.info("%s: %d routes from zebra applied, %d of them unchanged (no kernel write); %d stale routes swept",
                 self.cfg.where, len(routes), unchanged, swept)

    def _unusable(self, prefix: Prefix, stream: FpmStream) -> None:
        if prefix not in self.unusable:
            self.unusable.add(prefix)
            log.warning("%s: zebra's route %s cannot be used (not unicast, or an unknown device or nexthop object): "
                        "%s", self.cfg.where, format_prefix(prefix), stream.routes[prefix].describe())

    def show(self) -> dict:
        stream = self.stream
        return {"listen": "%s port %d" % (self.cfg.address, self.cfg.port), "connected": self.peer if self.conn else None,
                "replaying": self.replaying, "table": self.cfg.table, "protocols": list(self.cfg.protocols),
                "distance": self.cfg.distance, "stream": dict(stream.counters) if stream else None,
                "zebra_routes": len(stream.routes) if stream else 0,
                "zebra_nexthops": len(stream.nexthops) if stream else 0,
                "resync_pending": self.reread_owed,
                "last_error": self.last_error, **self.source.show(), **self.counters}


__all__ = ["FpmFeed", "FpmFeedConfig", "FpmStream", "FpmError", "tcp_peer_uid", "FPM_HEADER", "ZEBRA_IGNORED_IDS",
           "zebra_ignores"]
