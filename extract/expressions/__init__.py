"""Expression codes: backends (arkit52, flame53/EMOCA v2), temporal processing, the arkit52 rig and
the `expressions` stage. Importing this package does not import torch (only flame53 needs it)."""
from extract.expressions.backends import BACKENDS, get_backend
from extract.expressions.base import Backend, BackendOutput, ExpressionsSetupError

__all__ = ["BACKENDS", "Backend", "BackendOutput", "ExpressionsSetupError", "get_backend"]
