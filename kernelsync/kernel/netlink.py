"""rtnetlink sockets: the kernel port for the real kernel (:class:`RtNetlink`) and the
notification sockets (:class:`EventSocket`, :class:`RouteEventSocket`).  What goes over them
is packed and parsed by :mod:`kernelsync.kernel.codec`.

Batches: every message carries its own sequence number; only the last of a chunk asks for an
ACK (NLM_F_ACK).  The kernel answers each *failed* message with NLMSG_ERROR carrying that
sequence number, in order, before the last ACK, so refusals map back to operations.  The
receive buffer is forced large (SO_RCVBUFFORCE, 64 MiB); ENOBUFS means replies or events were
lost and the caller must read again by dump (:class:`~kernelsync.core.port.ResyncNeeded`).
Sockets are bound to the network namespace they are created in.
"""
from __future__ import annotations

import ctypes
import errno
import os
import queue
import socket
import struct
import threading
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ..core.model import AF_INET, AF_INET6, IfAddress, KNexthop, KRoute, Link, RouteKey
from ..core.ops import Op
from ..core.port import ChunkCallback, Refusal, ResyncNeeded, WriteStats
from . import codec
from .codec import (NETLINK_ADD_MEMBERSHIP, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK,
                    NETLINK_ROUTE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
                    NLMSGHDR, RTM_GETADDR, RTM_GETLINK, RTM_GETNEXTHOP, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK,
                    RTM_NEWNEXTHOP, RTM_NEWROUTE, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR,
                    RTNLGRP_IPV6_ROUTE, RTNLGRP_LINK, RTNLGRP_NEXTHOP, SO_ATTACH_FILTER, SO_RCVBUFFORCE,
                    SO_SNDBUFFORCE, SOL_NETLINK)

PIPELINE_MIN = 8192  # ops; below this one thread does it all (no thread start-up cost)


class NetlinkError(OSError):
    """A kernel refusal of a request: ``errno`` plus what the kernel said."""


class Message(NamedTuple):
    """One netlink message as received: ``type`` (nlmsg_type) and ``data`` (the whole message,
    ``nlmsghdr`` included; its body starts at byte 16)."""

    type: int
    data: bytes


def _set_buffers(sock: socket.socket, rcvbuf: int) -> None:
    for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf),
                               (SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


DUMP_RCVBUF = 4 << 20  # the dump socket's receive buffer: the kernel fills it only as we read


def _request_socket(rcvbuf: int) -> socket.socket:
    """A NETLINK_ROUTE socket for requests (not bound yet): large buffers, extended ACKs,
    ACKs without the request, strict checking (the kernel filters dumps)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    _set_buffers(sock, rcvbuf)
    for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK, NETLINK_GET_STRICT_CHK):
        try:
            sock.setsockopt(SOL_NETLINK, opt, 1)
        except OSError:
            pass
    return sock


def _dump_replies(buf: bytearray, n: int, seq: int, what: str,
                  stop_on_intr: bool = False) -> Tuple[List[Tuple[int, int, int]], bool, bool]:
    """The replies to dump request ``seq`` in ``buf[:n]`` (one ``recv()``): ``([(type, body
    start, end), ...], ended, interrupted)``; ``ended``: NLMSG_DONE (or an ACK) came;
    ``interrupted``: a reply carried NLM_F_DUMP_INTR (with ``stop_on_intr`` the batch stops
    there).  NetlinkError (``what`` refused) if the kernel refused the dump."""
    unpack = NLMSGHDR.unpack_from
    off = 0
    batch: List[Tuple[int, int, int]] = []
    interrupted = False
    while off + 16 <= n:
        length, mtype, flags, mseq, _pid = unpack(buf, off)
        if length < 16:
            break
        if mseq == seq:
            if flags & NLM_F_DUMP_INTR:
                interrupted = True
                if stop_on_intr:
                    return batch, False, True
            if mtype == NLMSG_DONE:
                return batch, True, interrupted
            if mtype == NLMSG_ERROR:
                err, text = codec.parse_error(buf, off, length, flags)
                if err:
                    raise NetlinkError(err, "%s refused: %s" % (what, text or os.strerror(err)))
                return batch, True, interrupted
            batch.append((mtype, off + 16, off + length))
        off += (length + 3) & ~3
    return batch, False, interrupted


class RtNetlink:
    """One NETLINK_ROUTE socket for requests (dumps and batches) in the current namespace; the
    :class:`~kernelsync.core.port.Kernel` port.  ``protocol``: written on every route (and
    filtered on in :meth:`dump_routes`)."""

    def __init__(self, protocol: int, rcvbuf: int = 64 << 20, groups: int = 0) -> None:
        self.protocol = protocol
        self.sock = _request_socket(rcvbuf)
        self.sock.bind((0, groups))
        self.portid = self.sock.getsockname()[0]  # the nlmsg_pid of the notifications our writes cause
        self.seq = int.from_bytes(os.urandom(2), "little") << 8
        self.buf = bytearray(1 << 20)
        self.stats = WriteStats()
        # the sliced route dump's own socket (:meth:`open_route_dump`), made now: a socket is
        # bound to the namespace it is created in, and the caller may have entered ours only
        # to make this object
        self.dump_sock = _request_socket(DUMP_RCVBUF)
        self.dump_sock.bind((0, 0))
        self._route_dump: Optional["RouteDump"] = None

    def close(self) -> None:
        self.sock.close()
        self.dump_sock.close()

    def _next_seq(self, count: int) -> int:
        seq = self.seq + 1
        self.seq = (self.seq + count) & 0x7FFFFFFF
        if self.seq < seq:  # wrapped: start again low
            seq, self.seq = 1, count
        return seq

    def _recv(self, what: str) -> int:
        """Receive into :attr:`buf`; ResyncNeeded (naming ``what`` was lost) on ENOBUFS."""
        try:
            return self.sock.recv_into(self.buf)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                raise ResyncNeeded("netlink receive buffer overflow: %s" % what) from exc
            raise

    # dumps ---------------------------------------------------------------------------------
    def _dump_batches(self, msg_type: int, body: bytes) -> Iterator[Tuple[bytearray, List[Tuple[int, int, int]]]]:
        """Send one dump request; yield ``(buffer, [(type, body start, end), ...])`` per
        ``recv()``.  The buffer is reused: consume it before the next iteration."""
        seq = self._next_seq(1)
        self.sock.send(codec.message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        self.stats.dumps += 1
        buf = self.buf
        while True:
            n = self._recv("dump replies lost")
            batch, done, interrupted = _dump_replies(buf, n, seq, "dump", stop_on_intr=True)
            if interrupted:
                raise ResyncNeeded("dump interrupted by a concurrent change")
            yield buf, batch
            if done:
                return

    def _dump(self, msg_type: int, body: bytes) -> Iterator[Tuple[int, bytearray, int, int]]:
        """Send one dump request; yield ``(type, buffer, body start, end)`` per message."""
        for buf, batch in self._dump_batches(msg_type, body):
            for mtype, start, end in batch:
                yield mtype, buf, start, end

    def dump_links(self) -> Dict[int, Link]:
        """ifindex -> :class:`Link`."""
        out = {}
        for mtype, buf, start, end in self._dump(RTM_GETLINK, codec.link_dump_request()):
            if mtype == RTM_NEWLINK:
                link = codec.parse_link(buf, start, end)
                out[link.index] = link
        return out

    def dump_nexthops(self) -> Dict[int, KNexthop]:
        """Every nexthop object in the namespace (ours and others'): id -> KNexthop."""
        out = {}
        for mtype, buf, start, end in self._dump(RTM_GETNEXTHOP, codec.nexthop_dump_request()):
            if mtype == RTM_NEWNEXTHOP:
                obj = codec.parse_nexthop(buf, start, end)
                if obj is not None:
                    out[obj.id] = obj
        return out

    def dump_addresses(self) -> List[IfAddress]:
        """Every interface address."""
        out = []
        for mtype, buf, start, end in self._dump(RTM_GETADDR, codec.address_dump_request()):
            if mtype == RTM_NEWADDR:
                addr = codec.parse_address(buf, start, end)
                if addr is not None:
                    out.append(addr)
        return out

    def dump_table(self, table: int, protocol: int = 0) -> List[KRoute]:
        """Every route of ``table`` (of ``protocol`` only, filtered by the kernel, when not 0)."""
        out = []
        for family in (AF_INET, AF_INET6):
            for mtype, buf, start, end in self._dump(RTM_GETROUTE, codec.route_dump_request(family, table, protocol)):
                if mtype == RTM_NEWROUTE:
                    route = codec.parse_route(buf, start, end)
                    if route is not None and route.table == table and (not protocol or route.protocol == protocol):
                        out.append(route)
        return out

    def dump_routes(self, table: int, protocol: int,
                    scopes: Optional[Dict[RouteKey, int]] = None) -> Dict[RouteKey, int]:
        """Our routes: ``(table, family, dst, plen, metric) -> nh id`` (0: no RTA_NH_ID); see
        :func:`kernelsync.kernel.codec.read_route_keys`.  ``scopes``: filled with the rtm_scope
        of those whose scope is not RT_SCOPE_UNIVERSE."""
        out: Dict[RouteKey, int] = {}
        for family in (AF_INET, AF_INET6):
            for buf, batch in self._dump_batches(RTM_GETROUTE, codec.route_dump_request(family, table, protocol)):
                codec.read_route_keys(buf, batch, family, table, protocol, out, scopes)
        return out

    def open_route_dump(self, table: int, protocol: int) -> "RouteDump":
        """Our routes (as :meth:`dump_routes`) read in slices on the dump socket, while the
        request socket goes on with repairs and writes: see
        :class:`~kernelsync.core.port.RouteDump`.  One at a time: a dump still open is read to
        its end and discarded first."""
        if self._route_dump is not None:
            self._route_dump.close()
        seq = self._next_seq(2)
        self._route_dump = RouteDump(self.dump_sock, table, protocol, seq, self.stats)
        return self._route_dump

    # batches -------------------------------------------------------------------------------
    def apply(self, ops: Sequence[Op], on_chunk: Optional[ChunkCallback] = None) -> List[Refusal]:
        """Write ``ops`` (from :func:`kernelsync.core.planner.plan`) in order, many messages per
        ``send()`` (chunks of about :data:`~kernelsync.kernel.codec.CHUNK_BYTES`), NLM_F_ACK on
        the last message of each chunk.

        Returns every :class:`Refusal`.  ``on_chunk(start, end, refusals)`` is called in the
        caller's thread for each chunk, in order, once its replies are read.  With more than
        PIPELINE_MIN ops a writer thread sends while this thread encodes the next chunk and runs
        ``on_chunk`` for the previous one: the kernel does its work inside ``send()``, which
        releases the GIL, so on two cores the two overlap.  Raises ResyncNeeded if replies were
        lost (ENOBUFS)."""
        if not ops:
            return []
        base = self._next_seq(len(ops))
        refusals: List[Refusal] = []
        self.stats.count(ops)
        if len(ops) < PIPELINE_MIN:
            start = 0
            while start < len(ops):
                data, end = codec.encode_chunk(ops, start, base, self.protocol)
                chunk: List[Refusal] = []
                self._send_chunk(data, base, start, base + end - 1, chunk)
                refusals += chunk
                if on_chunk is not None:
                    on_chunk(start, end, chunk)
                start = end
        else:
            self._apply_pipelined(ops, base, refusals, on_chunk)
        self.stats.failures += len(refusals)
        return refusals

    def _apply_pipelined(self, ops: Sequence[Op], base: int, refusals: List[Refusal],
                         on_chunk: Optional[ChunkCallback]) -> None:
        jobs: "queue.Queue" = queue.Queue(maxsize=2)
        done: "queue.Queue" = queue.Queue()
        error: List[BaseException] = []

        def writer() -> None:
            while True:
                job = jobs.get()
                if job is None:
                    return
                data, start, end = job
                chunk: List[Refusal] = []
                if not error:
                    try:
                        self._send_chunk(data, base, start, base + end - 1, chunk)
                    except BaseException as exc:  # handed to the caller's thread
                        error.append(exc)
                        continue
                    done.put((start, end, chunk))

        def finish() -> None:
            """Book every chunk the writer has finished so far."""
            while True:
                try:
                    start, end, chunk = done.get_nowait()
                except queue.Empty:
                    return
                refusals.extend(chunk)
                if on_chunk is not None:
                    on_chunk(start, end, chunk)

        thread = threading.Thread(target=writer, name="netlink-writer", daemon=True)
        thread.start()
        try:
            start = 0
            while start < len(ops) and not error:
                data, end = codec.encode_chunk(ops, start, base, self.protocol)
                jobs.put((data, start, end))
                start = end
                finish()
        finally:
            jobs.put(None)
            thread.join()
        finish()
        if error:
            raise error[0]

    def _send_chunk(self, data: bytes, base: int, first: int, last_seq: int, refusals: List[Refusal]) -> None:
        self.sock.send(data)
        self.stats.sends += 1
        unpack = NLMSGHDR.unpack_from
        buf = self.buf
        while True:
            n = self._recv("replies lost")
            off = 0
            done = False
            while off + 16 <= n:
                length, mtype, flags, seq, _pid = unpack(buf, off)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR and base + first <= seq <= last_seq:  # stale replies ignored
                    err, text = codec.parse_error(buf, off, length, flags)
                    if err:
                        refusals.append(Refusal(seq - base, err, text or os.strerror(err)))
                    if seq == last_seq:
                        done = True
                off += (length + 3) & ~3
            if done:
                return


class RouteDump:
    """One route dump of ``table`` and ``protocol`` (IPv4, then IPv6) on ``sock``, read in
    slices: :class:`kernelsync.core.port.RouteDump`.  The kernel builds the next buffer of
    a dump only when the previous one is read, so an open dump costs nothing between slices.
    ``seq``, ``seq + 1``: the two requests' sequence numbers."""

    def __init__(self, sock: socket.socket, table: int, protocol: int, seq: int, stats: WriteStats) -> None:
        self.sock = sock
        self.table = table
        self.protocol = protocol
        self.seq = seq
        self.stats = stats
        self.families = (AF_INET, AF_INET6)
        self.index = 0  # the family being read
        self.requested = False
        self.done = False
        self.interrupted = False
        self.buf = bytearray(1 << 16)

    def read(self, max_messages: int) -> Tuple[Dict[RouteKey, int], Dict[RouteKey, int], bool]:
        routes: Dict[RouteKey, int] = {}
        scopes: Dict[RouteKey, int] = {}
        count = 0
        buf = self.buf
        while not self.done and count < max_messages:
            family = self.families[self.index]
            seq = self.seq + self.index
            if not self.requested:
                self.sock.send(codec.message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq,
                                             codec.route_dump_request(family, self.table, self.protocol)))
                self.stats.dumps += 1
                self.requested = True
            try:
                n = self.sock.recv_into(buf)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.done = True
                    raise ResyncNeeded("netlink receive buffer overflow: route dump replies lost") from exc
                raise
            try:
                batch, ended, interrupted = _dump_replies(buf, n, seq, "route dump")
            except NetlinkError:
                self.done = True
                raise
            if interrupted:
                self.interrupted = True
            codec.read_route_keys(buf, batch, family, self.table, self.protocol, routes, scopes)
            count += len(batch)
            if ended:
                self.index += 1
                self.requested = False
                if self.index == len(self.families):
                    self.done = True
        return routes, scopes, self.done

    def close(self) -> None:
        """Read a dump not over to its end, discarding it (the socket is free again)."""
        while not self.done:
            try:
                self.read(1 << 30)
            except (ResyncNeeded, NetlinkError):
                pass


class EventSocket:
    """Notification socket: links (RTNLGRP_LINK), addresses, and nexthop objects
    (RTNLGRP_NEXTHOP = 32, above the bind() bitmask: joined with NETLINK_ADD_MEMBERSHIP).
    ``groups`` (below 32) and ``memberships`` (any) choose other groups; ``socket_filter``
    is classic BPF code (``struct sock_filter`` array) attached before the socket joins
    anything."""

    def __init__(self, rcvbuf: int = 16 << 20, groups: Tuple[int, ...] = (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
                 RTNLGRP_IPV6_IFADDR), memberships: Tuple[int, ...] = (RTNLGRP_NEXTHOP,),
                 socket_filter: Optional[bytes] = None) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        _set_buffers(self.sock, rcvbuf)
        if socket_filter is not None:
            self._prog = ctypes.create_string_buffer(socket_filter, len(socket_filter))
            fprog = struct.pack("HL", len(socket_filter) // 8, ctypes.addressof(self._prog))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        mask = 0
        for group in groups:
            mask |= 1 << (group - 1)
        self.sock.bind((0, mask))
        for group in memberships:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        self.sock.setblocking(False)
        self.buf = bytearray(1 << 20)
        self.overflows = 0  # ENOBUFS seen (notifications lost)

    def _discard(self) -> int:
        """After ENOBUFS: drop what is still queued.  The kernel reports the overflow before
        the messages queued ahead of it, so they are all older than the dump that follows;
        applied after it, they would undo newer state (an RTM_NEWROUTE whose RTM_DELROUTE was
        the one lost).  At most two buffers' worth (a flood that goes on is read next time).
        Returns the messages dropped."""
        dropped = 0
        budget = 2 * self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        while budget > 0:
            try:
                n = self.sock.recv_into(self.buf)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    budget -= 4096
                    continue
                raise
            budget -= max(n, 1)
            off = 0
            while off + 16 <= n:
                length = NLMSGHDR.unpack_from(self.buf, off)[0]
                if length < 16:
                    break
                dropped += 1
                off += (length + 3) & ~3
        return dropped

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def read(self) -> List[Message]:
        """Every pending message.  Raises ResyncNeeded on ENOBUFS (notifications were lost:
        whoever follows them must read the kernel again)."""
        out = []
        while True:
            try:
                n = self.sock.recv_into(self.buf)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overflows += 1
                    dropped = self._discard()
                    raise ResyncNeeded("netlink notification buffer overflow: notifications lost (%d queued "
                                       "older ones discarded)" % dropped) from exc
                raise
            off = 0
            while off + 16 <= n:
                length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(self.buf, off)
                if length < 16:
                    break
                out.append(Message(mtype, bytes(self.buf[off:off + length])))
                off += (length + 3) & ~3


class RouteEventSocket(EventSocket):
    """Route notifications (RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE), filtered in the kernel by
    a BPF program (:func:`~kernelsync.kernel.codec.route_notification_filter`): of our own
    ``protocol`` only another writer's changes in our ``table`` pass (``ip route del`` of our
    route, another instance writing it); the echoes of our own writes (sent from ``portid``,
    our request socket: hundreds of thousands in a full load, one per route on every group
    change with nexthop_compat_mode=1) never reach us.  ``others``: pass other protocols'
    route changes too (for the feeds that follow routes).  Without ``table``/``portid``
    (older callers) every message of ``protocol`` is dropped."""

    def __init__(self, protocol: int, rcvbuf: int = 16 << 20, table: Optional[int] = None, portid: int = 0,
                 others: bool = True) -> None:
        if table is None:
            socket_filter = codec.drop_protocol_filter(protocol)
        else:
            socket_filter = codec.route_notification_filter(protocol, table, portid, others)
        super().__init__(rcvbuf, groups=(RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE), memberships=(),
                         socket_filter=socket_filter)


__all__ = ["RtNetlink", "RouteDump", "EventSocket", "RouteEventSocket", "Message", "NetlinkError", "PIPELINE_MIN"]
