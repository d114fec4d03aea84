"""Small helpers shared by every room: atomic file writes, seeding, devices."""

from reslab.utils.atomic import atomic_write_bytes, atomic_write_text, atomic_path
from reslab.utils.seeding import seed_everything, make_generator
from reslab.utils.device import resolve_device

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_path",
    "seed_everything",
    "make_generator",
    "resolve_device",
]
