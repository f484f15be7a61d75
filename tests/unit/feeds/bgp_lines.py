"""ExaBGP JSON lines for the BGP tests, and the lab host's resolver."""
import json
import os
import socket

from kernelsync.core.links import LinkTable
from kernelsync.core.model import AF_INET, AF_INET6, IfAddress, Link, parse_prefix
from kernelsync.feeds.resolve import Resolver

CAPTURES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "golden", "exabgp")
V4 = parse_prefix("198.51.100.0/24")
V4B = parse_prefix("203.0.113.0/25")
V6 = parse_prefix("2001:db8:100::/48")


def a4(text):
    return socket.inet_pton(AF_INET, text)


def a6(text):
    return socket.inet_pton(AF_INET6, text)



def lab_resolver():
    """The lab's host: ha 192.0.2.2/29 + 2001:db8:a::2/64, hb 192.0.2.10/29 + 2001:db8:b::2/64."""
    links = LinkTable({i: Link(index=i, name=n, up=True, carrier=True) for i, n in ((4, "ha"), (5, "hb"), (6, "up"))})
    r = Resolver(links)
    r.set_addresses([IfAddress(AF_INET, 4, a4("192.0.2.2"), 29), IfAddress(AF_INET, 5, a4("192.0.2.10"), 29),
                     IfAddress(AF_INET6, 4, a6("2001:db8:a::2"), 64), IfAddress(AF_INET6, 5, a6("2001:db8:b::2"), 64),
                     IfAddress(AF_INET, 6, a4("10.9.0.1"), 24)])
    return r


def msg(kind, body, peer="192.0.2.1", local="192.0.2.2", peer_as=65001, local_as=65010):
    nb = {"address": {"local": local, "peer": peer}, "asn": {"local": local_as, "peer": peer_as}}
    nb.update(body)
    return json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": nb})


def announce(nlris, nexthop, family="ipv4 unicast", attrs=None, withdraw=None, **kw):
    update = {"attribute": attrs or {"origin": "igp", "as-path": {"0": {"element": "as-sequence",
                                                                        "value": [kw.get("peer_as", 65001)]}}}}
    if nlris:
        update["announce"] = {family: {nexthop: [n if isinstance(n, dict) else {"nlri": n} for n in nlris]}}
    if withdraw:
        update["withdraw"] = {family: [{"nlri": w} for w in withdraw]}
    return msg("update", {"direction": "receive", "message": {"update": update}}, **kw)


B = dict(peer="192.0.2.9", local="192.0.2.10")

