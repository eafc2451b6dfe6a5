"""The hot path's view of Fabric-wrapped objects: the bare module/optimizer where Fabric's wrappers add
nothing (one device, fp32), the wrappers everywhere else.

Fabric's ``_FabricModule.forward`` converts inputs and outputs through the precision plugin and walks
the output for backward hooks; methods marked with ``mark_forward_method`` are redirected through
``forward`` by patching it for each call; ``fabric.backward`` and ``_FabricOptimizer.step`` go through
the strategy and the precision plugin. For a single-device strategy with 32-true precision every one of
these steps is the identity, yet together they cost tens of microseconds per call, several times per
update. ``fabric.setup`` still runs (devices, distributed wrappers, checkpoint state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.fabric import Fabric
from lightning.fabric.plugins.precision import Precision
from lightning.fabric.strategies import SingleDeviceStrategy
from lightning.fabric.wrappers import _FabricModule, _FabricOptimizer
from torch import Tensor


def wrappers_are_identity(fabric: Fabric) -> bool:
    """Single device and plain fp32: Fabric's module, optimizer and backward wrappers change nothing."""
    return type(fabric.strategy) is SingleDeviceStrategy and type(fabric.strategy.precision) is Precision


def bare(fabric: Fabric, wrapped: Any) -> Any:
    """``wrapped``'s module or optimizer itself where :func:`wrappers_are_identity`, else ``wrapped``."""
    if not wrappers_are_identity(fabric):
        return wrapped
    if isinstance(wrapped, _FabricModule):
        return wrapped.module
    if isinstance(wrapped, _FabricOptimizer):
        return wrapped.optimizer
    return wrapped


def backward_fn(fabric: Fabric) -> Callable[[Tensor], None]:
    """``Tensor.backward`` where Fabric's backward would do only that, else ``fabric.backward``."""
    return Tensor.backward if wrappers_are_identity(fabric) else fabric.backward
