"""`mtu reproduce`: re-check every claim of the paper on a model and its tasks, with one command.

plan.py    which runs (method, tasks, experts, seed) each table needs
runner.py  train and evaluate each run, cached on disk (a finished run is never redone)
report.py  RESULTS.md: tables, figures and a holds / does not hold / inconclusive line per claim
adding.py  issue 16's experiment: a task added later to a trained model, its old tasks' check and section
"""

from mtu.reproduce.plan import Run, build_plan
from mtu.reproduce.runner import reproduce

__all__ = ["Run", "build_plan", "reproduce"]
