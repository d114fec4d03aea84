"""Experiments: resumable collections of training runs and their summaries.

* :mod:`reslab.experiments.degradation` — plain vs residual twins at several depths
  (He et al. 2015, Fig. 6): :func:`run_degradation`.
* :mod:`reslab.experiments.landscape` — loss surfaces and Hessian sharpness of several models
  (Li et al. 2018): :func:`run_landscape_experiment`.
* :mod:`reslab.experiments.search` — an Optuna study whose trials are runs through any launcher
  (``reslab search``): :func:`~reslab.experiments.search.run_search`; needs ``reslab[search]``.
* :mod:`reslab.experiments.lr_depth` — the best peak lr per depth for residual and plain twins, one
  search each: :func:`~reslab.experiments.lr_depth.run_lr_depth`.
* :mod:`reslab.experiments.common` — :func:`ensure_run` / :func:`ensure_runs`: train a run if
  it is new, resume it if interrupted, reuse it if finished (several at a time if asked).

```python
from reslab.experiments import run_degradation
result = run_degradation([20, 56, 110], "digits", out="runs/degradation-digits", jobs=2)
print(result.table())        # final train/test error per run; files in result.files
```
"""

from reslab.experiments.common import (
    RunOutcome,
    cpu_count,
    ensure_run,
    ensure_runs,
    plan_run,
    run_status,
)
from reslab.experiments.degradation import (
    DEFAULT_DEPTHS,
    DegradationResult,
    format_table,
    run_degradation,
    twin_models,
    validate_depths,
)
from reslab.experiments.landscape import (
    LandscapeExperimentResult,
    run_landscape_experiment,
)

__all__ = [
    "RunOutcome", "ensure_run", "ensure_runs", "plan_run", "run_status", "cpu_count",
    "DEFAULT_DEPTHS", "DegradationResult", "run_degradation", "twin_models", "validate_depths", "format_table",
    "LandscapeExperimentResult", "run_landscape_experiment",
]
