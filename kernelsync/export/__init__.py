"""Export to BGP through ExaBGP: which routes are announced (:mod:`.exporter`, pure), the
announced set kept across restarts (:mod:`.state`), and the glue that reads the kernel and sends
commands on the ExaBGP streams (:mod:`.feed`)."""
