"""The server subprocess's configuration, shared by the parent (writes it) and the server (reads it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server subprocess needs; written as JSON by the parent."""

    host: str
    port: int
    project: str
    """The only project the server answers for (others get 403 PERMISSION_DENIED)."""
    log_path: str
    """Request log, one JSON object per line."""
    parent_pid: int = 0
    """Exit when this process is gone (0: do not watch)."""

    def dump(self, path: Path) -> None:
        """Write the config as JSON."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> ServerConfig:
        """Read a config written by `dump`."""
        return cls(**json.loads(path.read_text()))
