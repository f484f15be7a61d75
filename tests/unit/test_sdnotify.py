"""systemd notifications (kernelsync.sdnotify) over a real AF_UNIX datagram socket named by
NOTIFY_SOCKET (abstract ``@`` name and a path): READY=1 only once SYNCED, STATUS= on changes,
WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 at the end; the variables leave the
environment (a child does not notify for us); WATCHDOG_PID of another process: no keep-alives."""
import os
import socket

import pytest

from kernelsync.sdnotify import STATUS_INTERVAL, Notifier


@pytest.fixture(params=["abstract", "path"])
def listener(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "abstract":
        name = "@kernelsync-test-%d-%d" % (os.getpid(), id(sock))
        sock.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify")
        sock.bind(name)
    sock.settimeout(0)
    yield sock, name
    sock.close()


def received(sock):
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_once_synced_status_on_change_watchdog_every_half_interval(listener):
    sock, name = listener
    state = ["AWAITING", "AWAITING: waiting for the feeds"]
    env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid()), "OTHER": "x"}
    notifier = Notifier(lambda: tuple(state), environ=env)
    assert env == {"OTHER": "x"}  # unset, as sd_notify(unset_environment=1)
    assert notifier.watchdog == 1.0
    notifier.start(10.0)
    assert received(sock) == ["STATUS=AWAITING: waiting for the feeds\nWATCHDOG=1"]
    assert notifier.deadline() == 11.0
    notifier.commit(10.5)
    assert received(sock) == []  # nothing changed, no keep-alive due
    notifier.commit(11.0)
    assert received(sock) == ["WATCHDOG=1"]
    state[:] = ["SYNCED", "SYNCED: 3 routes, 2 nexthop objects"]
    notifier.commit(11.2)
    assert received(sock) == ["READY=1\nSTATUS=SYNCED: 3 routes, 2 nexthop objects"]
    state[:] = ["SYNCED", "SYNCED: 4 routes, 2 nexthop objects"]
    notifier.commit(11.5)  # only the counts changed: at most one STATUS= a second
    assert received(sock) == [] and notifier.status_due == 11.2 + STATUS_INTERVAL
    assert notifier.deadline() == 12.0  # the keep-alive comes first
    notifier.commit(12.0)  # READY=1 once only
    assert received(sock) == ["WATCHDOG=1"]
    notifier.commit(12.2)
    assert received(sock) == ["STATUS=SYNCED: 4 routes, 2 nexthop objects"] and notifier.deadline() == 13.0
    notifier.close()
    assert received(sock) == ["STOPPING=1\nSTATUS=stopping"]


def test_watchdog_for_another_pid_and_no_socket():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = "@kernelsync-test-pid-%d" % os.getpid()
    sock.bind("\0" + name[1:])
    try:
        notifier = Notifier(lambda: ("SYNCED", "SYNCED"), environ={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000",
                                                                    "WATCHDOG_PID": "1"})
        assert notifier.enabled and notifier.watchdog is None
        notifier.start(0.0)
        assert notifier.deadline() is None
        assert sock.recv(4096) == b"READY=1\nSTATUS=SYNCED"
    finally:
        sock.close()
    silent = Notifier(lambda: ("SYNCED", "SYNCED"), environ={})
    assert not silent.enabled
    silent.start(0.0)
    silent.commit(1.0)
    assert silent.deadline() is None


def test_a_reload_is_announced_and_ends_ready(listener):
    sock, name = listener
    notifier = Notifier(lambda: ("SYNCED", "SYNCED: 1 routes"), environ={"NOTIFY_SOCKET": name})
    notifier.start(0.0)
    received(sock)
    notifier.reloading()
    (msg,) = received(sock)
    lines = msg.split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
    notifier.reloaded("reload applied: 1 changes")
    assert received(sock) == ["READY=1\nSTATUS=reload applied: 1 changes"]
    notifier.commit(0.5)
    assert received(sock) == [] and notifier.deadline() == 1.0  # at most one STATUS= a second
    notifier.commit(1.0)
    assert received(sock) == ["STATUS=SYNCED: 1 routes"]  # the usual status line again
