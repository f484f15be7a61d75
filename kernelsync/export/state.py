"""The exported set kept across restarts (``[export] state_file``).

ExaBGP keeps the announcements of a process that was killed, and announces them again to its
peers; a prefix that went away while kernelsync was not running would stay announced forever.
So the announced set is written down whenever it changes, and the next run withdraws what it no
longer exports.

The file holds *what* to withdraw, never command text: per prefix, what its ``withdraw route``
needs (ExaBGP's process API)::

    {"version": 2, "withdraw": [{"prefix": "203.0.113.10/32", "next_hop": "self",
                                 "neighbors": ["192.0.2.1"]}, ...]}

Every field is validated when read (a canonical prefix; ``self`` or an address of the prefix's
family; peer addresses) and the command is rebuilt from them (:meth:`ExportAttrs.withdraw`), so
a damaged or planted file can make kernelsync send nothing but withdrawals of well-formed
prefixes.  A bad entry is logged and skipped, the others are used.  The first format
(``{"withdraw": {prefix: command}}``) is migrated: each command is decomposed the same way and
rebuilt; one that is not exactly a withdrawal kernelsync writes is logged and ignored.

Safety: the file is opened with ``O_NOFOLLOW`` (a symlink at the path is ignored, logged); it is
written to a new temporary file (``O_EXCL``, mode 0600) in the same directory, fsynced, renamed
over the old one, and the directory is fsynced: a crash leaves the old set or the new one.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import tempfile
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ..core.model import AF_INET, Prefix, format_prefix, parse_address, parse_prefix
from .exporter import ExportAttrs

log = logging.getLogger("kernelsync.export")
VERSION = 2
MAX_STATE_BYTES = 256 << 20  # a larger file is not read (logged)

# what ExportAttrs.withdraw() writes: [neighbor A , neighbor B ]withdraw route P next-hop N
_WITHDRAW = re.compile(r"^((?:neighbor [0-9A-Fa-f:.]+ , )*neighbor [0-9A-Fa-f:.]+ )?"
                       r"withdraw route ([0-9A-Fa-f:./]+) next-hop ([0-9A-Za-z:.]+)$")


class Withdrawal(NamedTuple):
    """What a ``withdraw route`` needs: ``prefix``, ``next_hop`` (``self`` or an address),
    ``neighbors`` (peer addresses; empty: every peer of the process)."""

    prefix: Prefix
    next_hop: str
    neighbors: Tuple[str, ...] = ()

    def command(self) -> str:
        """The ExaBGP command (built by :class:`ExportAttrs`, as the announcement was)."""
        field = "next_hop_ipv4" if self.prefix[0] == AF_INET else "next_hop_ipv6"
        return ExportAttrs(neighbors=self.neighbors, **{field: self.next_hop}).withdraw(self.prefix)

    def record(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"prefix": format_prefix(self.prefix), "next_hop": self.next_hop}
        if self.neighbors:
            out["neighbors"] = list(self.neighbors)
        return out


def _address(text: Any) -> bool:
    try:
        return isinstance(text, str) and text == text.strip() and bool(parse_address(text))
    except ValueError:
        return False


def withdrawal(prefix_text: Any, next_hop: Any, neighbors: Any) -> Withdrawal:
    """A validated :class:`Withdrawal`; raises ``ValueError`` naming the bad field."""
    if not isinstance(prefix_text, str):
        raise ValueError("prefix: not a string: %r" % (prefix_text,))
    try:
        prefix = parse_prefix(prefix_text)
    except ValueError as exc:
        raise ValueError("prefix: %s" % exc) from None
    if format_prefix(prefix) != prefix_text:
        raise ValueError("prefix: %r is not written as kernelsync writes it" % prefix_text)
    if not (next_hop == "self" or _address(next_hop) and parse_address(next_hop)[0] == prefix[0]):
        raise ValueError("next_hop: %r is neither self nor an address of the prefix's family" % (next_hop,))
    if not isinstance(neighbors, (list, tuple)) or not all(_address(n) for n in neighbors):
        raise ValueError("neighbors: %r is not a list of peer addresses" % (neighbors,))
    return Withdrawal(prefix, next_hop, tuple(neighbors))


def parse_withdraw(command: str) -> Withdrawal:
    """The :class:`Withdrawal` of a command :meth:`ExportAttrs.withdraw` wrote; ``ValueError``
    for anything else."""
    match = _WITHDRAW.match(command) if isinstance(command, str) else None
    if match is None:
        raise ValueError("not a withdrawal kernelsync writes: %r" % (command[:200] if isinstance(command, str)
                                                                        else command,))
    selector, prefix, next_hop = match.groups()
    neighbors = [n[len("neighbor "):] for n in selector.strip().split(" , ")] if selector else []
    found = withdrawal(prefix, next_hop, neighbors)
    if found.command() != command:
        raise ValueError("not a withdrawal kernelsync writes: %r" % command[:200])
    return found


class StateFile:
    """``path``: where the set is kept (None: nowhere; :meth:`load` gives nothing)."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path

    def load(self) -> Dict[Prefix, str]:
        """prefix -> withdraw command (rebuilt from the validated fields) of what the last run
        announced; {} if there is no file, it is a symlink or cannot be read (logged: those
        prefixes are then not withdrawn).  Bad entries are logged and skipped."""
        if not self.path:
            return {}
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            why = "it is a symbolic link (not followed)" if exc.errno == errno.ELOOP else exc.strerror
            log.warning("export: state file %s ignored: %s; prefixes the last run announced and that are gone "
                        "now are not withdrawn", self.path, why)
            return {}
        try:
            with os.fdopen(fd, "rb") as fh:
                info = os.fstat(fh.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_STATE_BYTES:
                    raise ValueError("not a regular file of at most %d bytes" % MAX_STATE_BYTES)
                data = json.loads(fh.read(MAX_STATE_BYTES + 1))
            entries = self._entries(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("export: cannot read the state file %s (%s); prefixes the last run announced and "
                        "that are gone now are not withdrawn", self.path, exc)
            return {}
        out: Dict[Prefix, str] = {}
        bad: List[str] = []
        for where, build in entries:
            try:
                found = build()
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                bad.append("%s: %s" % (where, exc))
                continue
            out[found.prefix] = found.command()
        if bad:
            log.warning("export: state file %s: %d entr%s ignored (not withdrawn): %s", self.path, len(bad),
                        "y" if len(bad) == 1 else "ies", "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        return out

    def _entries(self, data: Any):
        """(where, builder) per entry, of either format."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") == VERSION:
            items = data["withdraw"]
            if not isinstance(items, list):
                raise ValueError("withdraw: not a list")
            return [("withdraw[%d]" % n,
                     lambda item=item: withdrawal(item["prefix"], item["next_hop"], item.get("neighbors", [])))
                    for n, item in enumerate(items)]
        if "version" not in data and isinstance(data.get("withdraw"), dict):  # the first format: commands
            log.info("export: state file %s is in the first format (commands); migrating it", self.path)
            return [("withdraw[%r]" % (prefix,), lambda prefix=prefix, command=command: self._migrate(prefix, command))
                    for prefix, command in data["withdraw"].items()]
        raise ValueError("unknown format (version %r)" % (data.get("version"),))

    @staticmethod
    def _migrate(prefix: str, command: Any) -> Withdrawal:
        found = parse_withdraw(command)
        if format_prefix(found.prefix) != prefix:
            raise ValueError("the command is for %s" % format_prefix(found.prefix))
        return found

    def save(self, withdraws: Mapping[Prefix, str]) -> None:
        """Keep prefix -> withdraw command (as :meth:`ExportAttrs.withdraw` wrote it) of
        everything announced (or still to withdraw): its fields are stored, not the text."""
        if not self.path:
            return
        records = []
        for prefix, command in withdraws.items():
            try:
                found = parse_withdraw(command)
            except ValueError as exc:  # a bug: kernelsync wrote it
                log.error("export: %s not kept in the state file: %s", format_prefix(prefix), exc)
                continue
            records.append(found.record())
        data = json.dumps({"version": VERSION, "withdraw": records}).encode()
        directory = os.path.dirname(self.path) or "."
        tmp = None
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(self.path), suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as fh:  # mkstemp: O_EXCL, mode 0600, a fresh name (no symlink followed)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # replaces a symlink at the path, never its target
            tmp = None
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            log.warning("export: cannot write the state file %s: %s", self.path, exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


__all__ = ["StateFile", "Withdrawal", "parse_withdraw", "withdrawal"]
