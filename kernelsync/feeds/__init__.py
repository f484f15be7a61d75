"""Route feeds: each writes its routes into the RIB as one or more sources, behind the
declared :class:`~kernelsync.feeds.base.Feed` interface the daemon drives.

* :mod:`.static`: the config's static routes and anycast groups;
* ExaBGP: :mod:`.exabgp` (its JSON, pure), :mod:`.bgp` (Adj-RIB-In and decision, pure),
  :mod:`.resolve` (next hops, pure), :mod:`.channels` (its streams: stdin, relays, acks),
  :mod:`.bgpfeed` (the glue), :mod:`.relay` (``kernelsync exabgp --relay``);
* routing daemons' kernel-format routes: :mod:`.routesource` (pure), :mod:`.tablefeed` (a
  daemon's kernel table), :mod:`.fpm` (FRR zebra's FPM stream).
"""
