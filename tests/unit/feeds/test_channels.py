"""ExaBGP's streams (kernelsync.feeds.channels): replies matched to commands, a stdout nobody
reads."""
import os

from kernelsync.feeds.channels import AckTracker, StdinChannel, Waker


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
    waker.close()

