"""The Python API: :class:`Registry` (``halodb.open``) orchestrating the layers below.

Owns a registry home (state file, stage, local names) and the workflows that combine layers:
staging, commit, publish, sync, scan, gc, CARs, watch. May import every layer below; never
demo, cli or testing. Only demo, export and cli import it (and ``halodb``, lazily).
"""

from halodb.api.registry import LogEntry, Registry, Stage, default_home, open

__all__ = ["LogEntry", "Registry", "Stage", "default_home", "open"]
