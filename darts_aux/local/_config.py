"""The JSON configuration a local server's parent writes and its subprocess reads, and that subprocess's argv."""

from __future__ import annotations

import json
import os
import sys
import typing
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from dataclasses import Field

PID_HEADER = "x-server-pid"
"""Header of a server's health answer naming its process, so a parent knows the answer is from its own child."""


def pid_header() -> tuple[str, str]:
    """The PID_HEADER of this process, for a health endpoint's answer."""
    return PID_HEADER, str(os.getpid())


class SubprocessConfig:
    """Mixin for a frozen dataclass with `host` and `port`: JSON round trip (tuples kept) and the public base URL."""

    host: str
    port: int
    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass (asdict, fields)

    @property
    def public_base(self) -> str:
        """Base URL of the server as clients see it."""
        return f"http://{self.host}:{self.port}"

    def dump(self, path: Path) -> None:
        """Write the config as JSON."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a config written by `dump`; JSON lists become tuples where the field is a tuple."""
        raw: dict[str, Any] = json.loads(path.read_text())
        hints = typing.get_type_hints(cls)
        tuples = {f.name for f in fields(cls) if typing.get_origin(hints[f.name]) is tuple}
        return cls(**{name: tuple(value) if name in tuples else value for name, value in raw.items()})


def config_path(argv: Sequence[str] | None, module: str) -> Path:
    """The one argument of a server subprocess (its config file); exits with a usage line otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise SystemExit(f"usage: python -m {module} CONFIG.json")
    return Path(args[0])
