"""The Python API: :class:`Registry` (``halodb.open``) orchestrating the layers below.

Owns a registry home (state file, stage, local names) and the workflows that combine layers:
staging, commit, publish, sync, scan, gc, CARs, watch. May import every layer below; never
demo, cli or testing. Only demo, export and cli import it (and ``halodb``, lazily).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halodb.api.registry import LogEntry, Registry, Stage, default_home, open

__all__ = ["LogEntry", "Registry", "Stage", "default_home", "open"]


def __getattr__(name: str) -> Any:
    # The registry imports every layer below (~0.3 s); a module of this package that needs
    # less (``lookup``, for `halodb at`) must not pay for it.
    if name in __all__:
        from halodb.api import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'halodb.api' has no attribute {name!r}")
