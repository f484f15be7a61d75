"""Tools shipped with kernelsync, apart from the product: scratch namespaces (:mod:`.netns`),
labs with real daemons (:mod:`.lab`: BIRD 2 + ExaBGP; :mod:`.ospflab`: BIRD 2 or FRR OSPF), the
demo (:mod:`.demo`), the benchmarks (:mod:`.bench`, :mod:`.bench_bgp`) and the chaos suite
(:mod:`.chaos`; its scenario :mod:`.chaos_gen` and its oracle :mod:`.chaos_oracle` import nothing
of kernelsync).  They use only the package's public APIs."""
