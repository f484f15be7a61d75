"""The control socket (kernelsync.control): served without waiting on any client, idle clients
closed, a live socket of another instance never removed (issue 12, defect 9b)."""
import json
import selectors
import socket

import pytest

from kernelsync import control
from kernelsync.control import ControlServer, query
from kernelsync.feeds.channels import SocketInUse, listen_unix


class Server:
    def __init__(self, path, answer=lambda request: {"request": request}, **kw):
        self.sel = selectors.DefaultSelector()
        self.server = ControlServer(str(path), answer, **kw)
        self.server.start(self.sel)

    def pump(self, now=0.0, rounds=20):
        """Run the handlers of what is ready, as the daemon's loop does (never waits)."""
        for _ in range(rounds):
            ready = self.sel.select(0)
            if not ready:
                return
            for key, _ in ready:
                key.data(now)

    def close(self):
        self.server.close()
        self.sel.close()


def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.settimeout(5)
    return sock


def read_all(sock):
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_slow_client_does_not_stall_the_others(tmp_path):
    path = tmp_path / "ks.sock"
    s = Server(path)
    slow = connect(path)
    slow.sendall(b"show st")  # and then nothing for a while
    s.pump()
    fast = connect(path)
    fast.sendall(b"show fib\n")
    s.pump()  # returns at once: nothing waits for the slow client
    assert json.loads(read_all(fast)) == {"request": "show fib"}
    slow.sendall(b"ats\n")
    s.pump()
    assert json.loads(read_all(slow)) == {"request": "show stats"}
    assert s.server.clients == {}
    s.close()


def test_an_idle_client_is_closed_after_the_timeout(tmp_path):
    path = tmp_path / "ks.sock"
    s = Server(path, idle_timeout=5.0)
    idle = connect(path)
    s.pump(now=100.0)
    assert s.server.deadline() == 105.0
    s.server.commit(104.0)
    assert len(s.server.clients) == 1
    s.server.commit(105.0)
    assert s.server.clients == {} and s.server.deadline() is None and s.server.counters["idle_closed"] == 1
    assert idle.recv(10) == b""  # closed by the server
    s.close()


def test_a_client_that_does_not_read_its_answer_costs_nothing_but_a_buffer(tmp_path):
    path = tmp_path / "ks.sock"
    s = Server(path, answer=lambda request: ["x" * 1000] * 10_000, idle_timeout=5.0)  # 10 MB
    lazy = connect(path)
    lazy.sendall(b"show rib\n")
    s.pump(now=1.0)  # writes what the socket takes, returns
    client = next(iter(s.server.clients.values()))
    assert client.writing and 0 < client.sent < len(client.wbuf)
    s.server.commit(6.0)  # no progress for 5 s: closed
    assert s.server.clients == {}
    s.close()


def test_a_request_too_large_gets_an_error(tmp_path):
    path = tmp_path / "ks.sock"
    s = Server(path)
    big = connect(path)
    big.sendall(b"x" * (control.MAX_REQUEST + 10))
    s.pump()
    assert json.loads(read_all(big)) == {"error": "request longer than %d bytes" % control.MAX_REQUEST}
    s.close()


def test_query_against_the_server(tmp_path):
    import threading
    path = tmp_path / "ks.sock"
    s = Server(path)
    result = []
    t = threading.Thread(target=lambda: result.append(query(str(path), "show stats")))
    t.start()
    while t.is_alive():
        s.pump()
        t.join(0.01)
    assert result == [{"request": "show stats"}]
    s.close()


def test_a_live_socket_of_another_instance_is_not_removed(tmp_path):
    path = tmp_path / "ks.sock"
    first = Server(path)
    with pytest.raises(SocketInUse, match="%s: another process is listening on it" % path):
        Server(path)
    assert path.exists()  # the first instance still answers
    sock = connect(path)
    sock.sendall(b"show stats\n")
    first.pump()
    assert json.loads(read_all(sock)) == {"request": "show stats"}
    first.close()


def test_a_stale_socket_is_replaced(tmp_path):
    path = tmp_path / "ks.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: what a killed process leaves
    dead.close()
    sock = listen_unix(str(path), 1)
    assert path.is_socket()
    sock.close()
    path.unlink()
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(OSError):
        listen_unix(str(regular), 1)  # not a socket: left alone
    assert regular.read_text() == "x"
