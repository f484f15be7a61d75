"""The rtnetlink socket's batching (kernelsync.kernel.netlink.RtNetlink.apply) over a stand-in
socket: many messages per send(), an ACK asked only on the last of a chunk, refusals mapped
back to operations by sequence number."""
from kernelsync.core.model import AF_INET, KNexthop
from kernelsync.core.ops import NexthopSet, RouteSet
from kernelsync.core.port import WriteStats
from kernelsync.kernel import codec
from kernelsync.kernel.netlink import RtNetlink

NEXTHOP = KNexthop(id=9, family=AF_INET, protocol=200, oif=5)

class _Sock:
    """Stands in for the socket to check batching: records sends, answers with an ACK."""

    def __init__(self, fail_seqs=()):
        self.sent = []
        self.fail = set(fail_seqs)
        self.pending = b""

    def send(self, data):
        self.sent.append(data)
        out = []
        off = 0
        while off < len(data):
            length, mtype, flags, seq, _ = codec.NLMSGHDR.unpack_from(data, off)
            if seq in self.fail or flags & codec.NLM_F_ACK:
                err = -22 if seq in self.fail else 0
                body = codec.NLMSGERR.pack(err) + data[off:off + 16]
                out.append(codec.NLMSGHDR.pack(16 + len(body), codec.NLMSG_ERROR, 0x100, seq, 0) + body)
            off += (length + 3) & ~3
        self.pending = b"".join(out)
        return len(data)

    def recv_into(self, buf):
        n = len(self.pending)
        buf[:n] = self.pending
        self.pending = b""
        return n


def test_batch_acks_only_last_of_chunk_and_maps_failures_by_sequence():
    nl = RtNetlink.__new__(RtNetlink)
    nl.protocol, nl.seq, nl.buf, nl.stats = 200, 100, bytearray(1 << 20), WriteStats()
    ops = [NexthopSet(NEXTHOP, False)] + [RouteSet((100, AF_INET, bytes([10, 0, i // 256, i % 256]), 32, 20), 9, False)
                                          for i in range(10000)]
    nl.sock = _Sock(fail_seqs={101 + 5, 101 + 9000})
    refusals = nl.apply(ops)
    assert [(r.index, r.errno) for r in refusals] == [(5, 22), (9000, 22)]
    assert 1 < len(nl.sock.sent) < 10  # many messages per send()
    acked = 0
    for chunk in nl.sock.sent:
        off = 0
        while off < len(chunk):
            length, _, flags, _, _ = codec.NLMSGHDR.unpack_from(chunk, off)
            acked += bool(flags & codec.NLM_F_ACK)
            last_flags = flags
            off += length
        assert last_flags & codec.NLM_F_ACK  # the last of each chunk asks for the ACK
    assert acked == len(nl.sock.sent)
    assert nl.stats.writes["route-set"] == 10000 and nl.stats.writes["nexthop-set"] == 1


class _DumpSock:
    """Stands in for the dump socket: answers each dump request with ``replies(family, seq)``,
    one ``recv`` per message."""

    def __init__(self, replies):
        self.replies = replies
        self.queue = []
        self.requests = []

    def send(self, data):
        _length, _mtype, _flags, seq, _ = codec.NLMSGHDR.unpack_from(data, 0)
        family = data[16]
        self.requests.append((family, seq))
        self.queue += self.replies(family, seq)
        return len(data)

    def recv_into(self, buf):
        msg = self.queue.pop(0)
        buf[:len(msg)] = msg
        return len(msg)


def test_a_sliced_route_dump_flagged_interrupted_goes_on_and_says_so():
    """NLM_F_DUMP_INTR on a route dump read in slices (RouteDump) does not raise (the engine
    merges what it learnt meanwhile, never restarting under a steady flap): it is recorded in
    ``interrupted``; IPv4 then IPv6 are read, in slices of whole recv() buffers."""
    from kernelsync.core.model import AF_INET6
    from kernelsync.kernel.netlink import RouteDump

    def route(i, family):
        dst = bytes([198, 51, 100, i]) if family == AF_INET else bytes([0x20, 1, 0xd, 0xb8]) + bytes(11) + bytes([i])
        return codec.encode_route_set(0, (100, family, dst, 32 if family == AF_INET else 128, 20), 7, 200, 0)

    def replies(family, seq):
        out = []
        for i in range(3):
            msg = bytearray(route(i, family))
            flags = codec.NLM_F_MULTI | (codec.NLM_F_DUMP_INTR if family == AF_INET and i == 1 else 0)
            codec.NLMSGHDR.pack_into(msg, 0, len(msg), codec.RTM_NEWROUTE, flags, seq, 0)
            out.append(bytes(msg))
        out.append(codec.NLMSGHDR.pack(20, codec.NLMSG_DONE, codec.NLM_F_MULTI, seq, 0) + bytes(4))
        return out

    sock = _DumpSock(replies)
    dump = RouteDump(sock, 100, 200, 50, WriteStats())
    got, sizes = {}, []
    while True:
        routes, _scopes, done = dump.read(2)
        got.update(routes)
        sizes.append(len(routes))
        if done:
            break
    assert sizes == [2, 2, 2, 0] and len(got) == 6 and dump.interrupted
    assert sock.requests == [(AF_INET, 50), (AF_INET6, 51)]
