"""Small helpers shared by every room: atomic file writes, seeding, devices."""

from reslab.utils.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from reslab.utils.device import resolve_device
from reslab.utils.seeding import make_generator, seed_everything

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_path",
    "seed_everything",
    "make_generator",
    "resolve_device",
]
