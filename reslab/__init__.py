"""reslab: residual networks — build them, train them, and measure why they work."""

from reslab._version import __version__
from reslab.errors import ReslabError
from reslab.models import create_model, list_models

__all__ = ["create_model", "list_models", "ReslabError", "__version__"]
