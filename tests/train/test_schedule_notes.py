"""Settings that cannot take effect are said so, in one line each."""

from __future__ import annotations

from reslab.train import build_schedule, resolve_config


def _notes(recipe: str, depth: int = 110, **overrides) -> list[str]:
    config = resolve_config(recipe, model="resnet110", overrides=overrides)
    return build_schedule(config, steps_per_epoch=10, total_iterations=config.iterations or 10 * config.epochs,
                          depth=depth).notes


def test_a_warm_up_longer_than_the_run_is_flagged():
    notes = _notes("cifar10-paper", iterations=30)
    assert any("warm-up (400 iterations) is as long as the run or longer (30 iterations)" in n
               and "never reaches 0.1" in n for n in notes), notes


def test_milestones_and_min_lr_that_the_schedule_ignores_are_flagged():
    notes = _notes("digits-quick", depth=20, milestones=[5, 8], schedule="onecycle")
    assert any("milestones [5, 8] are ignored: only the step schedule uses them" in n for n in notes), notes
    notes = _notes("digits-quick", depth=20, schedule="step", min_lr=0.001, milestones=[])
    assert any("min_lr 0.001 is ignored" in n for n in notes), notes
    assert not [n for n in _notes("digits-quick", depth=20) if "ignored" in n]
