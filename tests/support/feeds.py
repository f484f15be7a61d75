"""Stand-ins for the feeds' unit tests: a kernel that answers the dumps feeds make between engine
runs, and an ExaBGP stream that records what it is sent."""
from typing import Dict, List


class DumpingKernel:
    """``dump_table``, ``dump_nexthops``, ``dump_addresses`` from lists the test sets; counts
    the dumps by kind."""

    def __init__(self, routes=(), nexthops=None, addresses=()):
        self.routes = list(routes)
        self.nexthops: Dict[int, object] = dict(nexthops or {})
        self.addresses = list(addresses)
        self.dumps = {"table": 0, "nexthops": 0, "addresses": 0}

    def dump_table(self, table, protocol=0):
        self.dumps["table"] += 1
        return [r for r in self.routes if r.table == table and (not protocol or r.protocol == protocol)]

    def dump_nexthops(self):
        self.dumps["nexthops"] += 1
        return dict(self.nexthops)

    def dump_addresses(self):
        self.dumps["addresses"] += 1
        return list(self.addresses)


class RecordingChannel:
    """An ExaBGP stream: ``sent`` is every command, in order."""

    def __init__(self, name="test#1"):
        self.name = name
        self.sent: List[str] = []
        self.closed = False

    def send(self, command):
        self.sent.append(command)

    def close(self):
        self.closed = True
