"""The server subprocess's configuration, shared by the parent (writes it) and the server (reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from darts_aux.local._config import SubprocessConfig


@dataclass(frozen=True)
class ServerConfig(SubprocessConfig):
    """Everything the server subprocess needs; written as JSON by the parent."""

    host: str
    port: int
    project: str
    """The only project the server answers for (others get 403 PERMISSION_DENIED)."""
    log_path: str
    """Request log, one JSON object per line."""
    parent_pid: int = 0
    """Exit when this process is gone (0: do not watch)."""
