"""Tools shipped with kernelsync, apart from the product: scratch namespaces (:mod:`.netns`),
labs with real daemons (:mod:`.lab`: BIRD 2 + ExaBGP; :mod:`.ospflab`: BIRD 2 or FRR OSPF), the
demo (:mod:`.demo`) and the benchmarks (:mod:`.bench`, :mod:`.bench_bgp`).  They use only the
package's public APIs."""
