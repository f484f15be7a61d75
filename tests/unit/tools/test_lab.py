"""The BGP lab's pure parts (kernelsync.tools.lab): BIRD's route output, argument checks."""
import pytest

from kernelsync.tools import lab as kslab


def test_bird_route_parser():
    out = ("BIRD 2.0.12 ready.\n"
           "Table master4:\n"
           "203.0.113.10/32      unicast [hA 12:13:05.162] * (100) [AS65010i]\n"
           "\tvia 192.0.2.2 on ra\n"
           "                     unicast [hA 12:13:06.000] (100) [AS65010i]\n"
           "\tvia 192.0.2.3 on ra\n"
           "198.51.100.0/24      blackhole [s4 12:13:05.000] * (200)\n"
           "10.0.0.0/24          unicast [o 12:13:05.000] * E2 (150/10/10000) [10.0.0.1]\n"
           "\tvia 10.0.12.2 on e12 weight 1\n"
           "\tvia 10.0.13.2 on e13 weight 1\n"
           "Table master6:\n"
           "2001:db8:ff::/48     unicast [hA 12:13:05.162] * (100) [AS65010i]\n"
           "\tvia 2001:db8:a::2 on ra\n"
           "192.0.2.64/26 via 192.0.2.2 on ra [hA 12:00] * (100) [AS65010i]\n")
    routes = {}
    kslab.parse_bird_routes(out, routes)
    assert routes == {"203.0.113.10/32": ["192.0.2.2", "192.0.2.3"], "198.51.100.0/24": [],
                      "10.0.0.0/24": ["10.0.12.2", "10.0.13.2"],
                      "2001:db8:ff::/48": ["2001:db8:a::2"], "192.0.2.64/26": ["192.0.2.2"]}
    with pytest.raises(ValueError):
        kslab.BgpLab(hosts=3)
    with pytest.raises(ValueError):
        kslab.BgpLab(process_argv2=["true"])
