"""``kernelsync exabgp --relay`` (kernelsync.feeds.relay): bounded queue, drops counted and told
to the daemon in-band, the end of stdin always reached (issue 12, defect 8)."""
import os
import socket
import threading

from kernelsync.feeds import relay
from kernelsync.feeds.channels import RELAY_DROPPED, LineQueue, Lost
from kernelsync.tools.netns import wait_for


def test_a_slow_daemon_costs_lines_that_are_counted_and_told_never_a_blocked_exabgp(tmp_path):
    path = str(tmp_path / "exabgp.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    queue = LineQueue(max_lines=50, max_bytes=1 << 20)
    result = []
    thread = threading.Thread(target=lambda: result.append(relay.main(path, rfile=os.fdopen(r_in, "rb"), lines=queue,
                                                                       out=os.fdopen(w_out, "wb"))), daemon=True)
    thread.start()
    conn, _ = server.accept()  # and does not read for now: the relay's sendall waits
    line = b'{"type": "update", "n": %d}' + b" " * 1000
    sent = 3000  # 3 MB: far more than the socket and the queue hold
    with os.fdopen(w_in, "wb") as w:
        for n in range(sent):
            w.write(line % n + b"\n")  # a blocked relay would block ExaBGP here
        w.flush()
        wait_for(lambda: queue.dropped > 0, timeout=10, what="drops")
    # the daemon reads again: what arrived + what the relay said it dropped = what ExaBGP sent
    data = bytearray()
    conn.settimeout(10)
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    thread.join(10)
    assert result == [0]
    lines = bytes(data).split(b"\n")[:-1]
    notices = [Lost.decode(l)[0] for l in lines if l.startswith(RELAY_DROPPED)]
    updates = [l for l in lines if not l.startswith(RELAY_DROPPED)]
    assert notices and sum(notices) == queue.dropped
    assert len(updates) + queue.dropped == sent
    numbers = [int(l.split(b'"n": ')[1].split(b"}")[0]) for l in updates]
    assert numbers == sorted(numbers) and numbers[0] == 0  # in order
    conn.close()
    server.close()
    os.close(r_out)


def test_the_relay_exits_when_reading_stdin_fails(tmp_path):
    class Broken:
        def read1(self, n):
            raise RuntimeError("boom")

    assert relay.main(str(tmp_path / "nobody.sock"), rfile=Broken(), lines=LineQueue()) == 0
