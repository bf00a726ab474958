"""Injected misbehaviour of the local Earth Engine: scripted and random faults, delay, a concurrency cap.

The parent process changes it at runtime through `POST /_admin/faults` with a JSON object of `FaultSettings`
fields (only the keys given change; `DELETE /_admin/faults` restores a healthy server). A computePixels
request is first checked against the cap (429 at once), then takes the next scripted fault, else a random one
with `probability`, else gets its real answer; whichever it is, it is sent `delay` seconds after the request
arrived, or as soon as it is ready if that takes longer (a server whose work takes `delay`, as Earth Engine's does
on its own machines: the pixels are computed during the wait, not after it).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

TRUNCATE = "truncate"
"""Script entry: answer 200 with a Content-Length, send half of the body and close the connection."""
WRONG_SHAPE = "wrong-shape"
"""Script entry: answer 200 with a well-formed .npy of the real pixels, one row short of the requested grid."""
WRONG_DTYPE = "wrong-dtype"
"""Script entry: answer 200 with a well-formed .npy of the real pixels with every band as int16."""
CORRUPTIONS = (WRONG_SHAPE, WRONG_DTYPE)


@dataclass(frozen=True)
class Fault:
    """One injected answer: an HTTP error status (Google JSON error body), a truncated 200, or a wrong .npy."""

    status: int = 503
    message: str | None = None
    """Error message; None uses Earth Engine's wording for the status."""
    truncate: bool = False
    corrupt: str | None = None
    """`wrong-shape` or `wrong-dtype`: a complete 200 answer whose array is not what was asked for."""

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        """From 503, "truncate", "wrong-shape", "wrong-dtype", or {"status": 503, "message": …, "truncate": false}."""
        if raw == TRUNCATE:
            return cls(200, None, True)
        if raw in CORRUPTIONS:
            return cls(200, None, False, raw)
        if isinstance(raw, int) and not isinstance(raw, bool):
            return cls(_status(raw))
        if isinstance(raw, Mapping):
            unknown = set(raw) - {"status", "message", "truncate"}
            if unknown:
                raise ValueError(f"unknown fault keys {sorted(unknown)}")
            truncate = bool(raw.get("truncate", False))
            status = int(raw.get("status", 200 if truncate else 503))
            return cls(status if truncate else _status(status), raw.get("message"), truncate)
        raise ValueError(f"a fault is an HTTP status, {TRUNCATE!r}, one of {list(CORRUPTIONS)} or an object, "
                         f"not {raw!r}")

    def to_json(self) -> Any:
        """The compact form `parse` reads back."""
        if self.corrupt is not None:
            return self.corrupt
        if self.truncate:
            return TRUNCATE if self.message is None else {"truncate": True, "message": self.message}
        return self.status if self.message is None else {"status": self.status, "message": self.message}


def _status(status: int) -> int:
    if not 400 <= status <= 599:
        raise ValueError(f"an injected error status must be 4xx or 5xx, not {status}")
    return status


@dataclass(frozen=True)
class FaultSettings:
    """What the fault injector does (the JSON of `/_admin/faults`)."""

    script: tuple[Fault, ...] = ()
    """Answers for the next computePixels requests that pass the cap, in order."""
    probability: float = 0.0
    """Chance that an admitted request without a scripted fault fails with a status from `statuses`."""
    statuses: tuple[int, ...] = (503,)
    seed: int | None = None
    """Seed of the random draws (set together with `probability` for a reproducible sequence)."""
    delay: float = 0.0
    """Seconds from an admitted computePixels request's arrival to its answer (at least; computing overlaps it)."""
    max_in_flight: int | None = None
    """More admitted computePixels requests than this at once: the next one gets 429 at once (None: no cap)."""

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """A copy with the JSON `changes` applied; ValueError for unknown keys or bad values."""
        unknown = set(changes) - set(FaultSettings.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}")
        values: dict[str, Any] = dict(changes)
        if "script" in values:
            values["script"] = tuple(Fault.parse(f) for f in values["script"] or ())
        if "statuses" in values:
            values["statuses"] = tuple(_status(int(s)) for s in values["statuses"])
        new = replace(self, **values)
        if not 0.0 <= new.probability <= 1.0:
            raise ValueError(f"probability must be within 0 … 1, not {new.probability}")
        if new.probability > 0 and not new.statuses:
            raise ValueError("random faults need at least one status")
        if new.delay < 0:
            raise ValueError(f"delay must be >= 0, not {new.delay}")
        if new.max_in_flight is not None and new.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 or null, not {new.max_in_flight}")
        return new

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (faults in their compact form)."""
        raw = asdict(self)
        raw["script"] = [f.to_json() for f in self.script]
        raw["statuses"] = list(self.statuses)
        return raw


@dataclass
class FaultInjector:
    """The server-side state: current settings, what is left of the script, the random generator."""

    settings: FaultSettings = field(default_factory=FaultSettings)
    pending: deque[Fault] = field(default_factory=deque)
    rng: random.Random = field(default_factory=random.Random)

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update; a new script replaces what is left of the old one."""
        self.settings = self.settings.updated(changes)
        if "script" in changes:
            self.pending = deque(self.settings.script)
        if "seed" in changes or "probability" in changes:
            self.rng = random.Random(self.settings.seed)

    def clear(self) -> None:
        """Back to a healthy server: no script, no random faults, no delay, no cap."""
        self.settings = FaultSettings()
        self.pending.clear()
        self.rng = random.Random()

    def over_cap(self, admitted_in_flight: int) -> bool:
        """Whether one more request would exceed the concurrency cap."""
        cap = self.settings.max_in_flight
        return cap is not None and admitted_in_flight >= cap

    def draw(self) -> tuple[Fault | None, str | None]:
        """The fault for an admitted request and where it came from ("script" or "random"), or (None, None)."""
        if self.pending:
            return self.pending.popleft(), "script"
        s = self.settings
        if s.probability > 0 and self.rng.random() < s.probability:
            return Fault(self.rng.choice(s.statuses)), "random"
        return None, None

    def state(self) -> dict[str, Any]:
        """Settings plus the script entries not yet used."""
        return {**self.settings.to_json(), "remaining": [f.to_json() for f in self.pending]}


def script_json(script: Sequence[int | str | Mapping[str, Any] | Fault]) -> list[Any]:
    """Client-side helper: a script as JSON (validated)."""
    return [(f if isinstance(f, Fault) else Fault.parse(f)).to_json() for f in script]
