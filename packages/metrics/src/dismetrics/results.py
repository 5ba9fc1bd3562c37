"""Base class of every metric result: a frozen dataclass with a JSON-ready ``to_dict``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to JSON-serialisable Python values."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """A metric's outcome. ``to_dict()`` uses the disentanglement_lib key of each field.

    Subclasses list their headline fields in ``SCALARS`` and rename fields whose dlib key is not
    a Python-style name in ``KEYS`` (for example ``{"sap_score": "SAP_score"}``).
    """

    SCALARS: ClassVar[tuple[str, ...]] = ()
    KEYS: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (lists for arrays; NaN/inf as strings)."""
        return {
            self.KEYS.get(f.name, f.name): _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }

    def scalars(self) -> dict[str, float]:
        """The headline scores only, keyed by dlib names (what a results table shows)."""
        return {self.KEYS.get(name, name): float(getattr(self, name)) for name in self.SCALARS}
