"""The daemon's loop (kernelsync.daemon.Daemon.run) during a sliced full sync: between two
slices it polls its notification sockets, so a link event that arrives in the middle of the
dump is read and repaired before the dump ends (issue 14, item 4).  The kernel is the
in-memory one; the notification socket a stand-in whose file descriptor is one end of a
socketpair (made readable when the fake kernel's link goes down, in the middle of the dump)."""
import socket

import attrs

import kernelsync.daemon as daemon_mod
from kernelsync import config
from kernelsync.kernel import codec
from kernelsync.kernel.fake import FakeKernel
from kernelsync.kernel.netlink import Message

N = 600


class Notifications:
    """A notification socket: ``read()`` returns what was queued; ``sock`` is readable then."""

    def __init__(self, *args, **kw):
        self.sock, self._peer = socket.socketpair()
        self.sock.setblocking(False)
        self.queued = []

    def push(self, msg):
        self.queued.append(msg)
        self._peer.send(b"x")

    def read(self):
        try:
            while self.sock.recv(4096):
                pass
        except BlockingIOError:
            pass
        out, self.queued = self.queued, []
        return out

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()
        self._peer.close()


class Kernel(FakeKernel):
    """Links ``a`` and ``b``; ``a`` goes down (and its notification is queued) when a route
    dump's third slice is read; every slice read is logged in ``log``."""

    def __init__(self, protocol):
        super().__init__(protocol)
        self.add_link("a")
        self.add_link("b")
        self.events = None
        self.log = []

    def open_route_dump(self, table, protocol):
        dump = super().open_route_dump(table, protocol)
        kernel = self

        def read(max_messages, _read=dump.read):
            result = _read(max_messages)
            kernel.log.append(("slice", dump.done))
            if dump.reads == 3:
                kernel.set_link("a", up=False)
                kernel.events.push(Message(codec.RTM_NEWLINK, codec.message(codec.RTM_NEWLINK, 0, 0,
                                                                            codec.link_dump_request())))
            return result
        dump.read = read
        return dump

    def close(self):
        pass


class Claim:
    state = "running"

    def register(self, sel):
        pass

    def close(self):
        pass


def test_a_link_event_in_the_middle_of_a_sliced_full_sync_is_read_and_repaired_before_its_end(monkeypatch):
    kernels = []
    monkeypatch.setattr(daemon_mod, "RtNetlink", lambda protocol: kernels.append(Kernel(protocol)) or kernels[-1])
    monkeypatch.setattr(daemon_mod, "EventSocket", Notifications)
    monkeypatch.setattr(daemon_mod, "RouteEventSocket", Notifications)
    monkeypatch.setattr(daemon_mod, "log_compat_mode", lambda: None)
    routes = [{"prefix": "10.1.%d.%d/32" % (i // 250, i % 250 + 1), "nexthops": [{"dev": "a"}, {"dev": "b"}]} for i in range(N)]
    cfg = config.parse({"kernel": {"table": 100, "verify_delay": 0, "resync_interval": 3600},
                        "static": {"route": routes}})
    cfg = attrs.evolve(cfg, control_socket=None)
    d = daemon_mod.Daemon(cfg)
    kernel = kernels[0]
    kernel.events = d.events
    d.claim = Claim()
    engine = d.engine
    engine.dump_slice = engine.diff_slice = 50
    run = engine.run
    state = {"requested": False}

    def observed_run(now):
        result = run(now)
        if not state["requested"] and len(kernel.routes) == N:  # installed: now a full sync
            state["requested"] = True
            engine.request_full_sync()
        repairs = engine.counters["repairs"]
        if repairs and "repaired" not in state:
            state["repaired"] = len(kernel.log)
        if engine.counters["sliced_syncs"]:
            d.stopping = True
        return result
    engine.run = observed_run
    assert d.run() == 0
    slices = kernel.log
    assert engine.counters["sliced_syncs"] == 1 and len(slices) > 6
    assert slices[-1] == ("slice", True)
    # the repair came right after the third slice (the one that took the link down), long
    # before the dump's end
    assert state.get("repaired") == 3 and not any(done for _s, done in slices[:3])
    # the group lost a in place; every route stayed on it
    (gid,) = {n for _p, n in kernel.routes.values()}
    assert len(kernel.routes) == N and len(kernel.nexthops[gid].group) == 1
    assert engine.observed_routes == {k: n for k, (_p, n) in kernel.routes.items()}
