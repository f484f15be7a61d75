"""kill -9 under BGP feed load (kernelsync.tools.chaos_bgp), bounded for CI: BIRD 2 switches
static protocols on and off (routes announced and withdrawn on two sessions) to ExaBGP 5.0,
kernelsync is killed at random points and restarted; after each restart the kernel equals
BIRD's exported routes, no prefix BIRD announced throughout leaves the kernel, and a restart
while BIRD is quiet writes nothing.  ``kernelsync chaos-bgp --kills 100`` is the long run."""
import io

import pytest

from kernelsync.tools.chaos_bgp import Chaos, failed, summary
from kernelsync.tools.lab import install_requirements
from tests.support.netns import need_root

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.fixture(scope="module")
def daemons():
    need_root()
    install_requirements(("5.0",))


@pytest.mark.parametrize("seed", [12])
def test_kill_9_under_bgp_churn(daemons, seed):
    out = io.StringIO()
    chaos = Chaos(kills=5, seed=seed, groups=4, group_size=150, stable=200, churn_interval=0.3, max_delay=1.0,
                  quiet_every=5, early_share=0.25, timeout=30.0, out=out)
    report = chaos.run()
    text = out.getvalue() + summary(report)
    print(text)
    assert report["kills"] == 5 and report["kinds"]["quiet"] == 1, text
    assert report["toggles"] > 0, text
    assert report["divergences"] == [], text
    assert report["lost_prefixes"] == 0 and report["steady_rewritten"] == 0, text
    assert report["quiet_route_writes"] == [0] and report["quiet_monitor_messages"] == [0], text
    assert all(r.get("converge_s") is not None for r in report["records"] if r["kind"] != "early"), text
    assert not failed(report), text
