"""Rule parameters whose record does not depend on key order.

Snakemake records a job's params by ``repr`` and reruns the job when the record changes, so the same
settings read in another key order (a merged ``params.yaml``, ``dvc exp run -S``, a stacked config that
lists keys differently) would rerun every job for nothing. :class:`OrderFree` is a dict whose ``repr``
sorts keys at every depth; pickled (Snakemake hands params to a script that way) it is a plain dict in
its own order, so scripts, checkpoints and YAML dumps never meet the subclass.
"""

from __future__ import annotations

from typing import Any


def _sorted(value: Any) -> Any:
    """``value`` with every dict's keys sorted (by their text), at every depth."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return type(value)(_sorted(v) for v in value)
    return value


class OrderFree(dict):
    """A dict whose ``repr`` (Snakemake's params record) sorts its keys at every depth."""

    def __repr__(self) -> str:
        return repr(_sorted(dict(self)))

    def __reduce__(self) -> tuple:
        return dict, (dict(self),)


def order_free(value: Any) -> Any:
    """A rule parameter as :class:`OrderFree` when it is a dict, else unchanged."""
    return OrderFree(value) if isinstance(value, dict) else value
