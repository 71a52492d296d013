"""propagate: statistics of signal propagation in deep ReLU networks.

The public API (what ``analyses/`` and users import)::

    from propagate import MLP, initialize, Recorder, exact_stats
    net = initialize(MLP(depth=50, width=512), "he", seed=0)
    with Recorder(net) as rec:
        torch.nn.functional.cross_entropy(net(x), y).backward()
    rec.table()            # tidy per-layer statistics

Modules: ``inits`` (registry), ``nets`` (MLP), ``recorder`` (hooks), ``exact`` (log-space engine),
``sweep`` (depth sweep), ``theory`` (mean field), ``stats`` (CIs, rates, tests), ``data`` (MNIST),
``train`` (MNIST trainer), ``plots``/``report`` (figures and PDFs).
"""
__version__ = "0.1.0"

from propagate import stats, theory  # noqa: E402
from propagate.exact import exact_stats, propagate_stack  # noqa: E402
from propagate.inits import Initializer, InitError, available as available_inits, get as get_init, initialize  # noqa: E402
from propagate.nets import MLP  # noqa: E402
from propagate.recorder import Recorder  # noqa: E402
from propagate.sweep import SweepConfig, depth_sweep, run_sweep  # noqa: E402

__all__ = ["MLP", "Recorder", "exact_stats", "propagate_stack", "initialize", "get_init", "available_inits",
           "Initializer", "InitError", "SweepConfig", "run_sweep", "depth_sweep", "theory", "stats", "__version__"]
