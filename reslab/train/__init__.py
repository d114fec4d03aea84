"""reslab.train: the trainer, recipes, schedules, checkpoints, evaluation and distributed training.

```python
from reslab.train import resolve_config, train, load_run, evaluate
config = resolve_config("digits-quick", model="resnet20", overrides={"out": "runs/r20"})
result = train(config)                       # writes runs/r20/ (config.json, metrics, checkpoints)
print(result.summary())
run = load_run("runs/r20", checkpoint="last")   # model in eval mode on the CPU + config + dataset
print(evaluate(run.model, run.dataset).accuracy)
```
"""

from reslab.train.checkpoint import list_checkpoints
from reslab.train.config import (
    RESUMABLE_KEYS,
    TrainConfig,
    apply_overrides,
    list_recipes,
    load_recipe,
    parse_overrides,
    recipe_description,
    resolve_config,
)
from reslab.train.evaluation import EvalResult, Prediction, evaluate, load_images
from reslab.train.loading import LoadedRun, list_run_checkpoints, load_run, predict
from reslab.train.schedules import LRSchedule, build_schedule
from reslab.train.trainer import TrainResult, finetune, train
from reslab.train.transfer import finetune_config

__all__ = [
    "TrainConfig", "RESUMABLE_KEYS", "resolve_config", "apply_overrides", "parse_overrides", "list_recipes",
    "load_recipe", "recipe_description",
    "train", "TrainResult", "finetune", "finetune_config",
    "evaluate", "EvalResult", "predict", "Prediction", "load_images",
    "load_run", "LoadedRun", "list_checkpoints", "list_run_checkpoints",
    "LRSchedule", "build_schedule",
]
