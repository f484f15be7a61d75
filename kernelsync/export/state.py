"""The exported set kept across restarts (``[export] state_file``).

ExaBGP keeps the announcements of a process that was killed, and announces them again to its
peers; a prefix that went away while kernelsync was not running would stay announced forever.
So the announced set is written down, as ``{"withdraw": {prefix: withdraw command}}`` (JSON),
atomically (a temporary file renamed over the old one), whenever it changes; the next run
withdraws what it no longer exports.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, Mapping, Optional

from ..core.model import Prefix, format_prefix, parse_prefix

log = logging.getLogger("kernelsync.export")


class StateFile:
    """``path``: where the set is kept (None: nowhere; :meth:`load` gives nothing)."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path

    def load(self) -> Dict[Prefix, str]:
        """prefix -> withdraw command of what the last run announced; {} if there is no file or
        it cannot be read (logged: those prefixes are then not withdrawn)."""
        if not self.path:
            return {}
        try:
            with open(self.path) as fh:
                data = json.load(fh)
            return {parse_prefix(p): str(w) for p, w in data["withdraw"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("export: cannot read the state file %s (%s); prefixes the last run announced and "
                        "that are gone now are not withdrawn", self.path, exc)
            return {}

    def save(self, withdraws: Mapping[Prefix, str]) -> None:
        """Write prefix -> withdraw command of everything announced (or still to withdraw)."""
        if not self.path:
            return
        data = {"withdraw": {format_prefix(p): w for p, w in withdraws.items()}}
        tmp = self.path + ".tmp"
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("export: cannot write the state file %s: %s", self.path, exc)


__all__ = ["StateFile"]
