"""systemd's readiness and watchdog notifications (``Type=notify``, ``WatchdogSec=``).

The documented protocol of ``sd_notify(3)``: newline-separated ``KEY=VALUE`` assignments in
one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract name
written with a leading ``@``).  ``$WATCHDOG_USEC`` (microseconds) asks for a ``WATCHDOG=1``
at least that often; it is for us only if ``$WATCHDOG_PID`` is unset or our pid.  Like
``sd_notify(unset_environment=1)``, the variables are removed from the environment when read,
so that a child (``kernelsync hold``) does not notify on our behalf.

:class:`Notifier` takes part in the daemon's loop like a feed (``deadline``/``commit``):
``READY=1`` once the engine is ``SYNCED`` (every feed's initial state in the kernel), a
``STATUS=`` line whenever the state changes, ``WATCHDOG=1`` every half interval from the loop
itself (a loop stuck longer than ``WatchdogSec`` is restarted by systemd), ``STOPPING=1`` when
the loop ends.  Without ``$NOTIFY_SOCKET`` it does nothing.  Sending never blocks and never
raises: a failed send is logged once.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable, Optional, Tuple

log = logging.getLogger("kernelsync.sdnotify")
STATUS_INTERVAL = 1.0  # seconds between STATUS= updates of the counts (a state change goes at once)


def _address(name: str) -> Optional[str]:
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # vsock:... (a VM's manager): not supported


class Notifier:
    """``status()``: ``(state, text)``: the daemon's state (``READY=1`` once it is ``SYNCED``)
    and a line for ``STATUS=``.  ``environ``: where ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/
    ``WATCHDOG_PID`` are read (and removed); default ``os.environ``.  ``watchdog``: the
    keep-alive interval in seconds (half of ``$WATCHDOG_USEC``), None without a watchdog."""

    name = "systemd"
    ended = False

    def __init__(self, status: Callable[[], Tuple[str, str]], environ=None) -> None:
        env = os.environ if environ is None else environ
        self.status = status
        self.sock: Optional[socket.socket] = None
        self.address: Optional[str] = None
        self.watchdog: Optional[float] = None
        self.ready = False
        self.sent_status: Optional[str] = None
        self.sent_state: Optional[str] = None
        self.status_at = float("-inf")  # when STATUS= was last sent
        self.status_due: Optional[float] = None  # a changed STATUS= waiting for STATUS_INTERVAL
        self.next_ping: Optional[float] = None
        self.failed = 0
        name = env.pop("NOTIFY_SOCKET", None)
        usec, pid = env.pop("WATCHDOG_USEC", None), env.pop("WATCHDOG_PID", None)
        if not name:
            return
        self.address = _address(name)
        if self.address is None:
            log.warning("NOTIFY_SOCKET=%r: not a Unix socket; systemd is not notified", name)
            return
        if usec and (not pid or pid == str(os.getpid())):
            try:
                self.watchdog = int(usec) / 2e6
            except ValueError:
                log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog keep-alives", usec)
            else:
                if self.watchdog <= 0:
                    self.watchdog = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of ``KEY=VALUE`` lines; False if it could not be sent (logged once)."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            self.failed += 1
            if self.failed == 1:
                log.warning("notifying systemd (%r) failed: %s", self.address.replace("\0", "@"), exc)
            return False
        return True

    def reloading(self) -> None:
        """A configuration reload begins (SIGHUP, ``ExecReload``): ``RELOADING=1`` with the
        monotonic time it began (``MONOTONIC_USEC``, as ``Type=notify-reload`` wants)."""
        self.send("RELOADING=1", "MONOTONIC_USEC=%d" % (time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))

    def reloaded(self, result: str) -> None:
        """The reload is over (applied or refused: the daemon runs either way): ``READY=1`` and
        ``STATUS=`` with ``result``."""
        self.send("READY=1", "STATUS=%s" % result)
        self.sent_status = None  # the next commit restores the usual status line

    # the loop ------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        if self.enabled:
            self.next_ping = now if self.watchdog is not None else None
            self.commit(now)
            log.info("systemd: notifying %s%s", self.address.replace("\0", "@"),
                     "; watchdog keep-alive every %.3g s" % self.watchdog if self.watchdog else "")

    def deadline(self) -> Optional[float]:
        if self.status_due is None:
            return self.next_ping
        return self.status_due if self.next_ping is None else min(self.next_ping, self.status_due)

    def commit(self, now: float) -> None:
        """Every loop pass: READY=1 once SYNCED; STATUS= at once when the state changed, at most
        every STATUS_INTERVAL when only the counts did; WATCHDOG=1 when due."""
        if not self.enabled:
            return
        state, text = self.status()
        lines = []
        self.status_due = None
        if text != self.sent_status:
            if state != self.sent_state or now >= self.status_at + STATUS_INTERVAL:
                lines.append("STATUS=" + text)
            else:
                self.status_due = self.status_at + STATUS_INTERVAL
        if state == "SYNCED" and not self.ready:
            lines.insert(0, "READY=1")
        if self.next_ping is not None and now >= self.next_ping:
            lines.append("WATCHDOG=1")
            self.next_ping = now + self.watchdog
        if lines and self.send(*lines):
            if any(line.startswith("STATUS=") for line in lines):
                self.sent_status, self.sent_state, self.status_at = text, state, now
            if state == "SYNCED":
                self.ready = True

    def close(self) -> None:
        if self.sock is not None:
            self.send("STOPPING=1", "STATUS=stopping")
            self.sock.close()
            self.sock = None


__all__ = ["Notifier"]
