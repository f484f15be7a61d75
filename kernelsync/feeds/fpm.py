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
costs no kernel write, what did not come back is swept.  After that, changes apply as they come,
except deletions, which wait ``settle`` seconds (one batch for a burst; a stopping zebra deletes
its routes just before it closes the connection, and those deletions are then never applied).

**Losing zebra** (connection closed, reset, or a malformed frame, which closes the connection
with an error naming the frame): the routes stay installed, stale, for ``hold_time`` seconds
from the loss (a loss during a stale period does not extend it); zebra reconnects within 3 s of
a restart.  While routes are stale, the new connection's state (zebra's FIB filling again as
its daemons reconnect: one leg of an ECMP route first) is held until every stale prefix is back
and the stream has been quiet for ``replay_quiet``, or until the hold time ends, when what has
not come back is swept: a restart that ends where it began writes nothing.  Until the first
replay is applied (or ``hold_time`` after start, if zebra never comes), the source is not ready,
so the engine deletes nothing it installed before a restart of kernelsync.

**zebra is the authority while connected**: its deletions are real (a routing daemon of FRR
stopping makes zebra delete that daemon's routes, unless FRR's own graceful restart keeps them;
and during a flap zebra may hold no OSPF route at all for a moment), so they are followed, after
``settle``.

**Re-reading after flaps** (``resync_after_link``, off by default): FRR 8.4's stream has been
seen to miss an update after quick link flaps (zebra's RIB had the ECMP route again, the
stream's last word was one leg).  FPM has no request to resend, so the feed closes the
connection that many seconds after the last link event, or after the stream's last route
change that follows it (within RESYNC_FOLLOW seconds of the event, the replays excepted: OSPF
converges seconds after the link, and the update zebra misses may be among its changes);
zebra reconnects (within 3 s) and replays, and the replay window above makes that cost no
write where nothing changed.  Changes zebra makes meanwhile arrive with the replay.

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
past its leg is a malformed frame, with the error naming the field.
"""
from __future__ import annotations

import functools
import logging
import os
import pwd
import selectors
import socket
import struct
from typing import Dict, List, Mapping, Optional, Set, Tuple, Union

import attrs

from ..core.links import LinkTable
from ..core.model import KNexthop, KRoute, Path, Prefix, format_prefix
from ..core.rib import Rib
from ..kernel.codec import (NEXTHOP_MESSAGES, NHMSG, NLA, NLMSGHDR, ROUTE_MESSAGES, RTM_DELROUTE, RTM_NEWNEXTHOP,
                            RTM_NEWROUTE, RTMSG, DecodeError, parse_nexthop, parse_route)
from .base import BaseFeed, KernelChange
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
    seconds (see the module docstring); ``resync_after_link``: seconds after the last link event
    at which zebra's whole FIB is read again (0: never);
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
    resync_after_link: float = 0.0
    users: Tuple[str, ...] = ("frr", "root")
    where: str = "feed.fpm"


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
        self.deleted: Set[Prefix] = set()  # prefixes deleted and not back since take_dirty
        self.counters = {"frames": 0, "routes_added": 0, "routes_deleted": 0, "nexthops_added": 0,
                         "nexthops_deleted": 0, "ignored": 0}

    # decoding ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> int:
        """Append ``data`` and apply every complete frame; returns how many.  FpmError on a
        malformed frame (the stream cannot be trusted after it: close the connection)."""
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
                self._apply_frame(frame)
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
            self.deleted.discard(prefix)
            if route.nh_id:
                self.users.setdefault(route.nh_id, set()).add(prefix)
            self.dirty[prefix] = None
            return
        # a deletion, or the prefix now comes from a protocol we do not take: not ours any more
        if new:
            self.counters["ignored"] += 1
        if self._forget(prefix):
            self.counters["routes_deleted"] += 1
            self.deleted.add(prefix)
            self.dirty[prefix] = None

    def _forget(self, prefix: Prefix) -> bool:
        old = self.routes.pop(prefix, None)
        if old is None:
            return False
        if old.nh_id:
            users = self.users.get(old.nh_id)
            if users is not None:
                users.discard(prefix)
                if not users:
                    del self.users[old.nh_id]
        return True

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
        dirty, self.dirty = self.dirty, {}
        self.deleted.clear()
        return dirty

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
    ``links``: the link table (read only: interface names of zebra's ifindexes)."""

    def __init__(self, rib: Rib, cfg: FpmFeedConfig, links: LinkTable) -> None:
        self.cfg = cfg
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
        self.deleted_at = 0.0  # when the first deletion not applied yet came
        self.started = 0.0
        self.resync_at: Optional[float] = None  # re-read zebra's FIB then (after link events)
        self.link_event_at = -RESYNC_FOLLOW  # the last link event
        self.unusable: Set[Prefix] = set()  # prefixes whose route could not be expressed (logged once)
        self.counters = {"connections": 0, "refused": 0, "disconnects": 0, "malformed": 0, "replays": 0,
                         "resyncs": 0}
        self.last_error = ""
        self.refused_log_at = 0.0  # the next refused connection is logged from then on
        self.refused_unlogged = 0  # connections refused since the last warning

    # setup ---------------------------------------------------------------------------------
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
        self.last_frame = now
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
        self.replaying = self.full = False
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
                had_deleted = bool(stream.deleted)
                changes = stream.counters["routes_added"] + stream.counters["routes_deleted"]
                if stream.feed(data):
                    self.last_frame = now
                    if stream.deleted and not had_deleted:
                        self.deleted_at = now
                    if now - self.link_event_at <= RESYNC_FOLLOW and not self.replaying \
                            and self.cfg.resync_after_link > 0 \
                            and stream.counters["routes_added"] + stream.counters["routes_deleted"] != changes:
                        # routing is still converging after the link event (OSPF's updates come
                        # seconds later, and the one zebra misses may be among them): the re-read
                        # waits for the stream's last change
                        self.resync_at = now + self.cfg.resync_after_link
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
        if not change.link_event:
            return
        self.link_event_at = now
        if self.cfg.resync_after_link > 0:
            self.resync_at = now + self.cfg.resync_after_link
        if change.links is not None and change.links.names_changed and self.stream is not None:
            self.stream.mark_all_dirty()  # a device came, went or was renamed: look at every route again

    # cycle ---------------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        times: List[float] = []
        stale = self.source.deadline()
        if stale is not None:
            times.append(stale)
        stream = self.stream
        if not self.source.rib.ready.get(self.cfg.name) and not self.replaying:
            times.append(self.started + self.cfg.hold_time)
        if self.resync_at is not None and self.conn is not None:
            times.append(self.resync_at)
        if self.replaying:
            times.append(self.last_frame + self.cfg.replay_quiet)
        elif stream is not None and (stream.dirty or self.full):
            if stream.deleted:
                times.append(self.deleted_at + self.cfg.settle)
            elif not self.source.stale:
                times.append(0.0)
            elif self.source.all_back(stream.routes):  # recovering: held until zebra is quiet
                times.append(self.last_frame + self.cfg.replay_quiet)
        return min(times) if times else None

    def commit(self, now: float) -> None:
        if self.resync_at is not None and now >= self.resync_at:
            self.resync_at = None
            if self.conn is not None and not self.replaying:
                self.counters["resyncs"] += 1
                self._drop(now, "re-reading zebra's whole FIB %.1f s after link events (resync_after_link): zebra "
                                "replays it when it reconnects" % self.cfg.resync_after_link)
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
                return
            self.replaying = False
            self.full = True
            self.counters["replays"] += 1
            log.info("%s: FIB replay from %s over (%d frames, %d routes taken, %d nexthop objects)", self.cfg.where,
                     self.peer, stream.counters["frames"], len(stream.routes), len(stream.nexthops))
        if stream.deleted and now < self.deleted_at + self.cfg.settle:
            return  # deletions settle: zebra may be stopping (the connection closes) or replacing
        if self.source.stale and not (self.source.all_back(stream.routes)
                                      and now >= self.last_frame + self.cfg.replay_quiet):
            return  # routes are stale: hold zebra's partial states until every one is back
        dirty = stream.take_dirty()
        if self.full:
            self._apply_all(stream)
            return
        for prefix in dirty:
            paths = stream.paths(prefix, self.links.names)
            if paths is not None:
                self.source.update(prefix, paths)
                self.unusable.discard(prefix)
                continue
            self.source.withdraw(prefix)
            if prefix in stream.routes:
                self._unusable(prefix, stream)

    def _apply_all(self, stream: FpmStream) -> None:
        """zebra's whole state (after a replay, or a recovery): make it the source's; sweep
        what did not come back."""
        self.full = False
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
                "resync_pending": self.resync_at is not None and self.conn is not None,
                "last_error": self.last_error, **self.source.show(), **self.counters}


__all__ = ["FpmFeed", "FpmFeedConfig", "FpmStream", "FpmError", "tcp_peer_uid", "FPM_HEADER", "ZEBRA_IGNORED_IDS",
           "zebra_ignores"]
