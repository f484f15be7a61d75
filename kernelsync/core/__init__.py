"""The pure core: RIB -> desired FIB -> plan, and the reconciler that applies plans through the
kernel port.  Imports nothing outside itself (no config, no socket, no feed; a test checks).

Data path: feeds write :class:`~kernelsync.core.rib.Rib`; :class:`~kernelsync.core.fib.FibBuilder`
turns it into the desired FIB using shared nexthop objects and groups from
:class:`~kernelsync.core.nhm.NexthopManager`; :func:`~kernelsync.core.planner.plan` diffs desired
against observed into :mod:`~kernelsync.core.ops`; :class:`~kernelsync.core.engine.Engine`
applies them through :class:`~kernelsync.core.port.Kernel` and repairs on link events, reading
links into the one :class:`~kernelsync.core.links.LinkTable`.
"""
