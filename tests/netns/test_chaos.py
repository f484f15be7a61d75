"""The chaos suite, bounded for CI: ``kernelsync chaos`` (a real ``kernelsync run`` in scratch
namespaces, link flaps, bursts, links re-created, IPv6 addresses lost, outside deletions, kill
-9s) with two fixed seeds and one random seed, printed.  The oracle (kernelsync/tools/
chaos_oracle.py) must see no divergence after any quiet point, no prefix dark while a leg of it
stayed up, no leaked object and no foreign object changed.

Reproduce a failure with the seed it names: ``kernelsync chaos --seed S --events 100 --routes 800
--kills 2 -v`` (or ``--events 10000`` for the long run)."""
import random

import pytest

from kernelsync.tools.chaos import Chaos, Options, format_report
from tests.support.netns import need_root

pytestmark = [pytest.mark.netns, pytest.mark.slow]

# Issue 12's defects this suite measured, fixed: a restart after a quiet point writes nothing
# (defect 11: groups adopted by id), an outside `ip route del` is repaired at once (defect 12:
# asserted on ip monitor's timestamps with room for a loaded CI machine; measured 1-5 ms median),
# and a restart never deletes an object a route still uses (seed 2, step 19, before the fix).
STRICT_RESTART_WRITES = True
STRICT_ROUTE_REPAIR = 0.5
STRICT_RESTART_DARK = True

RANDOM_SEED = random.SystemRandom().randrange(1 << 31)


@pytest.mark.parametrize("seed", [1, 7, RANDOM_SEED], ids=["seed1", "seed7", "random"])
def test_chaos_storm_keeps_the_kernel_equal_to_the_oracle(seed, tmp_path):
    need_root()
    print("chaos seed %d (rerun: kernelsync chaos --seed %d --events 100 --routes 800 --kills 2 -v)" % (seed, seed))
    opts = Options(events=100, seed=seed, routes=800, kills=2, workdir=str(tmp_path),
                   strict_restart_writes=STRICT_RESTART_WRITES, strict_route_repair=STRICT_ROUTE_REPAIR,
                   strict_restart_dark=STRICT_RESTART_DARK)
    report = Chaos(opts).run().as_dict()
    text = format_report(report)
    print(text)
    assert report["events_total"] == 100
    assert 1 <= len(report["restarts"]) <= 2, text      # two kills in one burst make one restart
    assert report["crashed"] is None, text
    assert report["divergences"] == [], "seed %d:\n%s" % (seed, text)
    assert report["dark"] == [], "seed %d:\n%s" % (seed, text)
    assert report["leaked_objects"] == [], "seed %d:\n%s" % (seed, text)
    assert report["foreign_changes"] == [], "seed %d:\n%s" % (seed, text)
    assert report["strict_failures"] == [], "seed %d:\n%s" % (seed, text)
    assert report["ok"]
