"""The link table: the kernel's interfaces, one copy with one owner.  Pure.

The engine reads the links from the kernel (RTM_GETLINK, on every link notification and every
full sync) and is the only writer (:meth:`LinkTable.update`).  The nexthop manager, the
resolver, the exporter and the feeds hold a reference and read it; each :class:`LinkChange`
tells what one update changed, with the table as it was before, for those that act on a
change (a nexthop that lost its device, a guest that lost its carrier).
"""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Mapping, Optional

import attrs

from .model import Link


@attrs.frozen
class LinkChange:
    """What one reading of the links changed.

    ``before``: name -> :class:`Link` as the table held it before; ``changed``: names whose
    usability (admin up and carrier) or ifindex changed, or that came or went;
    ``names_changed``: the ifindex -> name map changed (a device added, removed or renamed)."""

    before: Mapping[str, Link]
    changed: FrozenSet[str]
    names_changed: bool

    def was_usable(self, name: str) -> bool:
        return _usable(self.before.get(name))

    def merged_after(self, earlier: Optional["LinkChange"]) -> "LinkChange":
        """This change and an ``earlier`` one not yet acted on, as one change."""
        if earlier is None:
            return self
        return LinkChange(before=earlier.before, changed=earlier.changed | self.changed,
                          names_changed=earlier.names_changed or self.names_changed)

    def lost(self, table: "LinkTable") -> List[str]:
        """Names usable before and not now (a carrier loss, an admin down, a device removed)."""
        return sorted(n for n in self.changed if self.was_usable(n) and not table.usable(n))


NO_CHANGE = LinkChange(before={}, changed=frozenset(), names_changed=False)


class LinkTable:
    """ifindex -> :class:`Link` (:attr:`by_index`), name -> Link (:attr:`by_name`) and ifindex
    -> name (:attr:`names`).  The three dicts are updated in place: a reader may keep a
    reference to one of them.  :attr:`names_version` increases whenever :attr:`names` changes."""

    def __init__(self, links: Optional[Mapping[int, Link]] = None) -> None:
        self.by_index: Dict[int, Link] = {}
        self.by_name: Dict[str, Link] = {}
        self.names: Dict[int, str] = {}
        self.names_version = 0
        if links:
            self.update(links)

    def update(self, links: Mapping[int, Link]) -> LinkChange:
        """Take the kernel's links now (ifindex -> Link); returns what changed."""
        old_by_name = dict(self.by_name)
        new_by_name = {l.name: l for l in links.values()}
        changed = frozenset(
            name for name in old_by_name.keys() | new_by_name.keys()
            if _usable(old_by_name.get(name)) != _usable(new_by_name.get(name))
            or _index(old_by_name.get(name)) != _index(new_by_name.get(name)))
        names = {index: l.name for index, l in links.items()}
        names_changed = names != self.names
        self.by_index.clear()
        self.by_index.update(links)
        self.by_name.clear()
        self.by_name.update(new_by_name)
        if names_changed:
            self.names.clear()
            self.names.update(names)
            self.names_version += 1
        return LinkChange(before=old_by_name, changed=changed, names_changed=names_changed)

    def get(self, name: str) -> Optional[Link]:
        return self.by_name.get(name)

    def usable(self, name: str) -> bool:
        """The device exists, is up and has carrier (the kernel keeps nexthops on it)."""
        link = self.by_name.get(name)
        return link is not None and link.usable


def _usable(link: Optional[Link]) -> bool:
    return link is not None and link.usable


def _index(link: Optional[Link]) -> int:
    return 0 if link is None else link.index


__all__ = ["LinkTable", "LinkChange", "NO_CHANGE"]
