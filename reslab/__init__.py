"""reslab: residual networks — build them, train them, and measure why they work."""

from reslab.errors import ReslabError
from reslab.models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "ReslabError", "__version__"]
