"""kernelsync: routing-daemon routes into the Linux FIB as shared nexthop objects and groups."""
__version__ = "0.1.0"
