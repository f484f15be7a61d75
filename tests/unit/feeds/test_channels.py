"""ExaBGP's streams (kernelsync.feeds.channels): replies matched to commands, a stdout nobody
reads, bounded buffers, long lines, a reader that always ends the stream."""
import logging
import os
import selectors
import socket

import pytest

from kernelsync.core.model import parse_prefix
from kernelsync.feeds.channels import (RELAY_DROPPED, AckTracker, ExabgpStreams, LineQueue, LineSplitter, Lost,
                                       RelayChannel, StdinChannel, Waker)
from kernelsync.tools.netns import wait_for


def test_ack_tracker_matches_replies_in_order():
    t = AckTracker(timeout=10.0)
    t.sent("version", 0.0)
    t.sent("announce route 203.0.113.10/32 next-hop self", 0.0)
    t.sent("announce route 203.0.113.300/32 next-hop self", 0.0)
    assert t.reply() == "version"
    t.version_seen("5.0.15")
    assert t.reply() == "announce route 203.0.113.10/32 next-hop self"
    assert t.reply() == "announce route 203.0.113.300/32 next-hop self"
    assert t.reply() is None


def test_ack_tracker_stops_matching_for_exabgp_42_and_on_silence():
    t = AckTracker(timeout=10.0)
    t.sent("version", 0.0)
    t.sent("x", 0.0)
    t.version_seen("4.2.25")  # rejects silently: matching would shift
    assert t.reply() is None and not t.pending
    t.sent("y", 1.0)
    assert not t.pending
    quiet = AckTracker(timeout=10.0)  # exabgp.api.ack = false
    quiet.sent("a", 0.0)
    quiet.sent("b", 5.0)
    assert quiet.deadline() == 10.0
    assert quiet.expire(9.0) == []
    assert quiet.expire(10.0) == ["a"]
    assert quiet.deadline() is None and not quiet.correlate


def test_a_stdout_nobody_reads_never_blocks_sending():
    """ExaBGP not reading our commands (a full pipe): send() only queues; the writer thread is
    the one that waits."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    waker = Waker()
    with os.fdopen(r_in, "rb") as rfile, os.fdopen(w_out, "wb") as wfile:
        channel = StdinChannel(waker, rfile=rfile, wfile=wfile)
        command = "announce route 203.0.113.10/32 next-hop self community [65010:53]"
        for _ in range(20_000):  # 1.3 MB: 20 times what the pipe holds
            channel.send(command)
        assert channel.out.qsize() > 10_000  # returned with most still queued: the writer is stuck
        os.close(w_in)  # end the reader thread
        data = b""
        while len(data) < 20_000 * (len(command) + 1):  # drain: everything arrives, in order
            data += os.read(r_out, 1 << 20)
        assert data == (command + "\n").encode() * 20_000
        channel.close()
    os.close(r_out)
    channel.reader.join(10)  # its last act is a wake-up: the waker must still be open
    waker.close()



# --- bounded buffers, a reader that always ends the stream (issue 12, defect 8) --------------------


def test_line_splitter_joins_lines_across_reads_and_skips_one_too_long(caplog):
    s = LineSplitter("stdin", max_line=100)
    assert s.feed(b"a") == [] and s.feed(b"b\ncd") == [b"ab"]
    assert s.feed(b"\n") == [b"cd"]
    with caplog.at_level(logging.ERROR, logger="kernelsync.exabgp"):
        assert s.feed(b"\x1b[31m\x00" + b"x" * 60) == []
        assert s.feed(b"y" * 60) == []  # over 100 bytes: skipped, nothing kept
        assert s.parts == [] and s.feed(b"z" * 1000) == [] and s.parts == []
        assert s.feed(b"zz\nnext\n" + b"w" * 101 + b"\nok\n") == [b"next", b"ok"]
    assert s.too_long == 2
    logs = [r.getMessage() for r in caplog.records]
    assert logs[0] == "stdin: skipped a line of 1128 bytes (over 100): \\x1b[31m\\x00" + "x" * 60 + "y" * 60
    assert logs[1].startswith("stdin: skipped a line of 101 bytes (over 100): www")
    assert s.feed(b"x" * 100) == [] and s.feed(b"\n") == [b"x" * 100]  # exactly max_line: kept
    assert s.feed(b"last") == [] and s.end() == [b"last"] and s.end() == []


def test_line_queue_drops_what_does_not_fit_and_counts_it():
    q = LineQueue(max_lines=3, max_bytes=10)
    assert q.put([b"a", b"b"]) == 0
    assert q.put([b"c", b"d", b"e"]) == 2
    assert q.put([b"0123456789"]) == 1  # bytes bound
    assert (q.dropped, q.lost.count, q.lost.affected, len(q)) == (3, 3, None, 3) and not q.has_room()
    q.end()  # the end of the stream always fits
    assert q.take() == [b"a", b"b", b"c", None] and q.has_room() and q.bytes == 0


def _pipe_channel(**bounds):
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    waker = Waker()
    channel = StdinChannel(waker, rfile=os.fdopen(r_in, "rb"), wfile=os.fdopen(w_out, "wb"), **bounds)
    return channel, waker, w_in, r_out


def test_a_full_stdin_queue_drops_counts_and_asks_for_a_route_refresh_once_there_is_room():
    """The loop does not take lines for a while: the reader keeps draining the pipe (ExaBGP's
    writes never block), what does not fit is dropped and counted, and once the loop has taken
    the queue, its listeners are told (the BGP feed asks for a route-refresh)."""
    channel, waker, w_in, r_out = _pipe_channel(max_lines=1000, max_bytes=1 << 20)
    streams = ExabgpStreams()
    streams.sel = selectors.DefaultSelector()
    got, lost = [], []
    streams.consumer = lambda c, lines, now: got.extend(lines)
    streams.on_lost.append(lambda c, now, affected: lost.append((c, affected)))
    streams.stdin = channel
    streams.open_channel(channel, 0.0)
    line = (b'{"type": "update", "neighbor": {"address": {"peer": "192.0.2.1"}, "message": {"update": {"announce": '
            b'{"ipv4 unicast": {"192.0.2.1": [{"nlri": "198.51.100.0/24"}]}}}}}}\n')
    os.write(w_in, line * 5000)  # would block if the reader stopped reading (the pipe is smaller)
    wait_for(lambda: channel.lines.dropped == 4000, timeout=10, what="4000 lines dropped")
    assert len(channel.lines) == 1000 and lost == []  # the loop did not run: no recovery yet
    assert streams.deadline() == 0.0 + 0.1  # the loop looks again (RECOVERY_POLL) until there is room
    streams._on_wake(1.0)
    assert len(got) == 1000 and lost == [(channel, {"192.0.2.1": {"ipv4 unicast"}})]  # room again: recovered once
    assert streams.counters["lines_dropped"] == 4000 and streams.counters["loss_recoveries"] == 1
    os.write(w_in, line * 10)
    wait_for(lambda: len(channel.lines) == 10, timeout=10, what="lines")
    streams._on_wake(2.0)
    assert len(got) == 1010 and len(lost) == 1  # nothing more lost: no second refresh
    os.close(w_in)
    wait_for(lambda: None in channel.lines.items, timeout=10, what="end of stream")
    channel.close()
    os.close(r_out)
    channel.reader.join(10)  # its last act is a wake-up: the waker must still be open
    waker.close()


def _lost(*lines):
    lost = Lost()
    for line in lines:
        lost.note(line)
    return lost


UPDATE_A = (b'{"exabgp": "5.0.0", "type": "update", "neighbor": {"address": {"local": "192.0.2.2", "peer": "192.0.2.1"}, '
            b'"message": {"update": {"announce": {"ipv4 unicast": {"192.0.2.1": [{"nlri": "198.51.100.0/24"}]}}}}}}')
WITHDRAW_B = (b'{"exabgp": "4.0.1", "type": "update", "neighbor": {"address": {"local": "2001:db8::2", "peer": '
              b'"2001:db8::1"}, "message": {"update": {"withdraw": {"ipv6 unicast": [{"nlri": "2001:db8:1::/48"}]}}}}}')
EOR = b'{"type": "update", "neighbor": {"address": {"peer": "192.0.2.1"}, "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}}}'
STATE = b'{"type": "state", "neighbor": {"address": {"peer": "192.0.2.1"}, "state": "down"}}'


def test_what_dropped_lines_were_about():
    assert _lost(UPDATE_A, WITHDRAW_B, UPDATE_A).affected == {"192.0.2.1": {"ipv4 unicast"},
                                                             "2001:db8::1": {"ipv6 unicast"}}
    for other in (EOR, STATE, b"done", b"error", b"{not json"):  # not an UPDATE of a family: everything
        assert _lost(UPDATE_A, other).affected is None
    lost = _lost(UPDATE_A, WITHDRAW_B)
    assert Lost.decode(lost.encode()) == (2, lost.affected)
    assert Lost.decode(_lost(STATE).encode()) == (1, None)
    assert Lost.decode(RELAY_DROPPED + b"5 {broken") == (5, None)


def test_a_lost_line_triggers_the_bgp_feeds_route_refresh():
    from tests.unit.feeds.test_bgpfeed import make
    feed, _rib, _kernel, streams, channel = make()
    channel.has_room = lambda: True
    for lost, commands in (
            (_lost(UPDATE_A, WITHDRAW_B), ["neighbor 192.0.2.1 announce route-refresh ipv4 unicast",
                                           "neighbor 2001:db8::1 announce route-refresh ipv6 unicast"]),
            (_lost(UPDATE_A, STATE), ["announce route-refresh ipv4 unicast", "announce route-refresh ipv6 unicast"])):
        channel.lost = lost.count
        channel.recovered = lambda lost=lost: lost
        del channel.sent[:]
        streams.commit(1.0)
        assert channel.sent == commands
    assert streams.counters["lines_dropped"] == 4 and streams.counters["loss_recoveries"] == 2
    assert not streams.acks[channel].correlate  # a reply may have been lost: no longer matched


class Exploding:
    """A stdin whose read raises what the reader did not expect."""

    def __init__(self, exc):
        self.exc = exc
        self.calls = 0

    def fileno(self):
        raise ValueError("no file")

    def read1(self, n):
        self.calls += 1
        if self.calls == 1:
            return b'{"a": 1}\npartial'
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), MemoryError(), UnicodeError("x"), KeyError("k")])
def test_the_stdin_reader_always_signals_the_end_of_stream(exc, caplog):
    waker = Waker()
    r_out, w_out = os.pipe()
    with caplog.at_level(logging.ERROR, logger="kernelsync.exabgp"):
        channel = StdinChannel(waker, rfile=Exploding(exc), wfile=os.fdopen(w_out, "wb"))
        channel.reader.join(10)
    assert channel.take() == [b'{"a": 1}', b"partial", None]
    assert any("reading stdin failed: %s" % type(exc).__name__ in r.getMessage() for r in caplog.records)
    channel.close()
    os.close(r_out)
    waker.close()


def test_the_command_queue_is_bounded():
    channel, waker, w_in, r_out = _pipe_channel(max_commands=100)
    command = "announce route 203.0.113.10/32 next-hop self community [65010:53]" + " " * 1000
    sent = [channel.send(command) for _ in range(400)]  # 400 KB: the pipe holds 64 KB, the writer waits
    assert sent.count(False) > 0 and channel.commands_dropped == sent.count(False)
    assert channel.out.qsize() <= 100
    os.close(w_in)
    channel.close()
    os.close(r_out)  # the writer fails (EPIPE) and goes on
    channel.reader.join(10)  # its last act is a wake-up: the waker must still be open
    waker.close()


def test_relay_channel_bounds_its_buffers_and_reads_the_relays_drop_notice():
    ours, theirs = socket.socketpair()
    channel = RelayChannel(ours, 1, max_wbuf=10_000, max_line=1000)
    theirs.setblocking(False)
    results = [channel.send("x" * 99) for _ in range(10_000)]  # 1 MB to a relay that does not read
    assert results.count(False) > 0 and len(channel.wbuf) <= 10_000 and channel.commands_dropped == results.count(False)
    theirs.sendall(b'{"a": 1}\n' + RELAY_DROPPED + b"42\n" + b"y" * 5000 + b'\n{"b": 2}\n'
                   + _lost(UPDATE_A).encode() + b"\n")
    assert channel.take() == [b'{"a": 1}', b'{"b": 2}']
    assert channel.lost == 43 and channel.lines_too_long == 1
    assert channel.recovered().affected is None and channel.lost == 0  # one notice said: everything
    theirs.sendall(_lost(UPDATE_A).encode() + b"\n")
    assert channel.take() == [] and channel.recovered().affected == {"192.0.2.1": {"ipv4 unicast"}}
    theirs.close()
    assert channel.take() == [None]
    channel.close()


def test_when_a_state_change_may_be_lost_what_no_refresh_re_sends_is_flushed_after_the_hold():
    """A peer's ``down`` among the dropped lines: ExaBGP refreshes only established peers, so
    the paths of every peer of the stream are stale until a refresh window re-sends them; the
    rest goes when restart_hold_time is over."""
    from tests.unit.feeds.bgp_lines import announce, msg
    from tests.unit.feeds.test_bgpfeed import V4, make, nexthops
    feed, rib, _kernel, streams, channel = make()
    V4B = parse_prefix("203.0.113.0/24")
    feed.on_lines(channel, [announce(["198.51.100.0/24"], "192.0.2.1", peer="192.0.2.1").encode(),
                            announce(["203.0.113.0/24"], "192.0.2.3", peer="192.0.2.3").encode()], 0.0)
    feed.commit(1.0)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")] and nexthops(rib, V4B) == [("192.0.2.3", "ha")]
    channel.lost = 2
    channel.recovered = lambda: _lost(UPDATE_A, STATE)
    channel.has_room = lambda: True
    streams.commit(2.0)
    assert all(p.stale for peer in feed.bgp.peers.values() for p in peer.paths.values())
    # 192.0.2.1 is up: its refresh window re-sends its path; 192.0.2.3 went down meanwhile: nothing
    refresh = lambda subtype: msg("refresh", {"route-refresh": {"afi": "ipv4", "safi": "unicast", "subtype": subtype}},
                                  peer="192.0.2.1")
    feed.on_lines(channel, [refresh("begin").encode(),
                            announce(["198.51.100.0/24"], "192.0.2.1", peer="192.0.2.1").encode(),
                            refresh("end").encode()], 3.0)
    feed.commit(3.0)
    hold = feed.settings.restart_hold_time
    feed.commit(2.0 + hold - 0.1)
    assert nexthops(rib, V4B) == [("192.0.2.3", "ha")]  # kept while the hold lasts
    feed.commit(2.0 + hold)
    feed.commit(2.0 + hold + 1)
    assert nexthops(rib, V4) == [("192.0.2.1", "ha")] and nexthops(rib, V4B) is None
