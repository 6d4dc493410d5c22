"""`mtu reproduce`: re-check every claim of the paper on a model and its tasks, with one command.

plan.py    which runs (method, tasks, experts, seed) each table needs
runner.py  train and evaluate each run, cached on disk (a finished run is never redone)
report.py  RESULTS.md: tables, figures and a holds / does not hold / inconclusive line per claim
adding.py  issue 16's experiment: a task added later to a trained model, its old tasks' check and section

The names below load on first use, so `python -m mtu.reproduce.<module>` runs its module once.
"""

from mtu.utils.lazy import lazy_exports

_LAZY = {"Run": "mtu.reproduce.plan", "build_plan": "mtu.reproduce.plan", "reproduce": "mtu.reproduce.runner"}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
