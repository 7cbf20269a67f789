"""The Python API: :class:`Registry` (``halodb.open``) orchestrating the layers below.

Owns a registry home (its state file, stage and local names), and the workflows that
combine layers: staging, committing, publishing, sync, scan, gc, CAR export, watch. May
import every layer below it; only the CLI and the demo import it.
"""

from halodb.api.registry import LogEntry, Registry, Stage, default_home, open

__all__ = ["LogEntry", "Registry", "Stage", "default_home", "open"]
