"""The kernel port's implementations: rtnetlink messages (:mod:`.codec`, pure), the sockets that
carry them (:mod:`.netlink`), and an in-memory kernel for fast tests (:mod:`.fake`)."""
