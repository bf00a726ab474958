"""Data-directory parameters of the maintenance flows."""

from __future__ import annotations

from pathlib import Path

from darts_aux.settings import get_settings


def resolve_data_dir(data_dir: str | None) -> Path:
    """A flow's data_dir parameter, else DARTS_AUX_DATA_DIR."""
    return Path(data_dir or get_settings().data_dir).expanduser()
