"""Tasks: what each kind of run learns and measures — the plug-ins of the one training engine.

A run is a task + settings → a run directory. The engine (:mod:`reslab.train`) trains any
registered task; a task (:class:`Task`) says how its data loads, its model is built, a step's loss
is computed and a model is evaluated. The shipped tasks register themselves when this package
loads; a task of your own registers the same way (:func:`register_task`, see
docs/ARCHITECTURE.md).

* ``classify`` — a class per image or vector (error, accuracy);
* ``segment`` — a class per pixel, U-Nets (pixel accuracy, mIoU);
* ``language-model`` — the next character of a text (nats and bits per character).
"""

from reslab.tasks.base import Task, choose_task, get_task, register_task, task_names
from reslab.tasks import classify, language_model, segment  # noqa: E402,F401 - each registers its task

__all__ = ["Task", "choose_task", "get_task", "register_task", "task_names"]
