"""FaultProxy: a loopback reverse proxy that makes any local server flaky, for reliability tests.

    with FaultProxy(catalog.base_url, probability=0.3, seed=7, stall_seconds=3) as proxy:
        stac_url = proxy.via(catalog.stac_url)   # STAC links and asset hrefs come back pointing at the proxy
        ...
        proxy.fault_counts()                     # {"5xx": 4, "reset": 3, "stall": 2, "truncate": 5}
        proxy.down(path_prefix="/files/")        # from now on every file request fails
        proxy.clear()                            # healthy again

The proxy (`python -m darts_aux.local.faultproxy CONFIG.json`, asyncio + h11) forwards every request to one
upstream base URL and, for requests whose path starts with `path_prefix`, injects with `probability` (drawn
from a seeded generator, after any scripted faults) one of the `kinds`:

- `5xx`: an error status from `statuses` (Google's JSON error shape) without asking the upstream;
- `reset`: the connection is closed with a TCP reset before any answer;
- `stall`: nothing is sent for `stall_seconds` (past the client's timeout); a client still waiting then gets
  the real answer;
- `truncate`: the real answer's status and full Content-Length, then half of the body, then the connection
  is closed (for an answer without a body: a reset instead, logged as such).

Textual answers have the upstream base URL rewritten to the proxy's (so links, hrefs and the Earth Engine
discovery document lead back through the proxy); binary bodies, Range requests, 206 and Content-Range pass
unchanged. Each proxied request is one JSON line in the proxy's own log: time, method, path, range, fault
(`none`, `5xx`, `reset`, `stall`, `truncate`), origin (`script`/`random`), status, bytes sent, length declared,
seconds, and `client_gone` when a stalled client hung up first.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from random import Random
from typing import Any

import httpx

from darts_aux.local import _procs
from darts_aux.local._config import SubprocessConfig
from darts_aux.local._server import LocalServer, read_request_log

FAULT_KINDS: tuple[str, ...] = ("5xx", "reset", "stall", "truncate")
"""Every kind of fault the proxy can inject."""
NO_FAULT = "none"
"""The `fault` of a request passed through unchanged (also a script entry: let one request pass)."""
SERVER_ERRORS: tuple[int, ...] = (500, 502, 503, 504)
ADMIN_PREFIX = "/_proxy/"
"""Paths of the proxy's own endpoints (faults, health); never forwarded, never logged."""


@dataclass(frozen=True)
class FaultPlan:
    """What the proxy injects; the JSON of `POST /_proxy/faults` changes any subset of the fields."""

    probability: float = 0.0
    """Chance that an eligible request without a scripted fault gets a random one."""
    kinds: tuple[str, ...] = FAULT_KINDS
    """Kinds drawn (uniformly) for random faults."""
    statuses: tuple[int, ...] = SERVER_ERRORS
    """Statuses drawn for a `5xx` fault."""
    seed: int | None = None
    """Seed of the random draws; None: unpredictable."""
    stall_seconds: float = 5.0
    """How long a `stall` keeps silent; make it longer than the client's timeout."""
    script: tuple[str, ...] = ()
    """Faults (or "none") for the next eligible requests, in arrival order, before any random ones."""
    path_prefix: str = ""
    """Only requests whose path starts with this are eligible ("" = all)."""

    def updated(self, changes: Mapping[str, Any]) -> FaultPlan:
        """A copy with the JSON `changes` applied; ValueError for unknown keys or bad values."""
        unknown = set(changes) - set(FaultPlan.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault plan fields {sorted(unknown)}")
        values = dict(changes)
        for key in ("kinds", "statuses", "script"):
            if key in values:
                values[key] = tuple(values[key] or ())
        new = replace(self, **values)
        new.check()
        return new

    def check(self) -> None:
        """ValueError naming the first field with an impossible value."""
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within 0 … 1, not {self.probability}")
        bad = [k for k in self.kinds if k not in FAULT_KINDS] + [
            k for k in self.script if k not in (*FAULT_KINDS, NO_FAULT)]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; use {list(FAULT_KINDS)} (or {NO_FAULT!r} in a script)")
        if self.probability > 0 and not self.kinds:
            raise ValueError("random faults need at least one kind")
        if not self.statuses or any(not 500 <= int(s) <= 599 for s in self.statuses):
            raise ValueError(f"statuses must be 5xx codes, not {list(self.statuses)}")
        if self.stall_seconds < 0:
            raise ValueError(f"stall_seconds must be >= 0, not {self.stall_seconds}")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FaultPlan:
        """The plan a `to_json` dict describes (validated)."""
        return cls().updated(raw)


@dataclass(frozen=True)
class Draw:
    """The fault chosen for one request: kind, where it came from, and the status of a `5xx`."""

    kind: str = NO_FAULT
    origin: str | None = None
    status: int | None = None


@dataclass
class FaultInjector:
    """The proxy's fault state: the plan, what is left of its script, and the seeded generator."""

    plan: FaultPlan = field(default_factory=FaultPlan)
    pending: deque[str] = field(default_factory=deque)
    rng: Random = field(default_factory=Random)
    initial: FaultPlan = field(default_factory=FaultPlan)
    """The plan the proxy started with (`clear` returns to it, without faults)."""

    @classmethod
    def from_plan(cls, plan: FaultPlan) -> FaultInjector:
        """A fresh injector running `plan` from its start."""
        return cls(plan, deque(plan.script), Random(plan.seed), plan)

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update; a new script replaces the rest of the old one, a new seed restarts the draws."""
        self.plan = self.plan.updated(changes)
        if "script" in changes:
            self.pending = deque(self.plan.script)
        if "seed" in changes:
            self.rng = Random(self.plan.seed)

    def clear(self) -> None:
        """No faults any more; kinds, statuses, stall length and prefix as at the start."""
        self.plan = replace(self.initial, probability=0.0, script=())
        self.pending.clear()

    def draw(self, path: str) -> Draw:
        """The fault for a request to `path`: the next scripted one, else a random one, else none."""
        if not path.startswith(self.plan.path_prefix):
            return Draw()
        if self.pending:
            return self._resolved(self.pending.popleft(), "script")
        if self.plan.probability > 0 and self.rng.random() < self.plan.probability:
            return self._resolved(self.rng.choice(self.plan.kinds), "random")
        return Draw()

    def _resolved(self, kind: str, origin: str) -> Draw:
        if kind == NO_FAULT:
            return Draw(NO_FAULT, origin)
        status = int(self.rng.choice(self.plan.statuses)) if kind == "5xx" else None
        return Draw(kind, origin, status)

    def state(self) -> dict[str, Any]:
        """The plan plus the scripted faults not yet used."""
        return {**self.plan.to_json(), "remaining": list(self.pending)}


@dataclass(frozen=True)
class ProxyConfig(SubprocessConfig):
    """Everything the proxy subprocess needs; written as JSON by the parent."""

    host: str
    port: int
    upstream: str
    """Base URL every request is forwarded to (no trailing slash)."""
    log_path: str
    plan: dict[str, Any]
    """The initial `FaultPlan` as JSON."""
    parent_pid: int = 0
    """Exit when this process is gone (0: do not watch)."""


class FaultProxy(LocalServer):
    """A running (or startable) fault-injecting reverse proxy in front of `upstream_url`."""

    run_prefix = "darts-aux-faultproxy-"

    def __init__(
        self,
        upstream_url: str,
        probability: float = 0.0,
        kinds: Iterable[str] = FAULT_KINDS,
        *,
        seed: int | None = None,
        stall_seconds: float = 5.0,
        statuses: Iterable[int] = SERVER_ERRORS,
        script: Iterable[str] = (),
        path_prefix: str = "",
        startup_timeout: float = 30.0,
    ) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.plan = FaultPlan(probability, tuple(kinds), tuple(statuses), seed, stall_seconds, tuple(script),
                              path_prefix)
        self.plan.check()
        super().__init__(startup_timeout)

    def __repr__(self) -> str:
        return f"FaultProxy({self.upstream_url!r}, {self.url if self.running else 'stopped'})"

    # -- addresses ---------------------------------------------------------------------------------

    def via(self, upstream_url: str) -> str:
        """The same URL reached through the proxy (an URL under the upstream base)."""
        if not upstream_url.startswith(self.upstream_url):
            raise ValueError(f"{upstream_url} is not under the proxied upstream {self.upstream_url}")
        return self.url + upstream_url[len(self.upstream_url):]

    # -- request log -------------------------------------------------------------------------------

    def requests(self, fault: str | None = None, path_contains: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first, optionally only those with this `fault` or path fragment."""
        records = read_request_log(self.log_path)
        return [r for r in records if (fault is None or r["fault"] == fault)
                and (path_contains is None or path_contains in r["path"])]

    def fault_counts(self, path_contains: str | None = None) -> Counter[str]:
        """Injected faults per kind (requests passed unchanged are not counted)."""
        return Counter(r["fault"] for r in self.requests(path_contains=path_contains) if r["fault"] != NO_FAULT)

    def reset_log(self) -> None:
        """Forget the logged requests."""
        self.log_path.write_text("", encoding="utf-8")

    # -- fault control -----------------------------------------------------------------------------

    def set_faults(
        self,
        probability: float | None = None,
        kinds: Iterable[str] | None = None,
        *,
        seed: int | None = None,
        stall_seconds: float | None = None,
        statuses: Iterable[int] | None = None,
        script: Iterable[str] | None = None,
        path_prefix: str | None = None,
    ) -> dict[str, Any]:
        """Change the fault plan at runtime; only the arguments given change. Returns the proxy's fault state."""
        changes: dict[str, Any] = {}
        for key, value in (("probability", probability), ("stall_seconds", stall_seconds),
                           ("path_prefix", path_prefix)):
            if value is not None:
                changes[key] = value
        for key, values in (("kinds", kinds), ("statuses", statuses), ("script", script)):
            if values is not None:
                changes[key] = list(values)
        if seed is not None:
            changes["seed"] = seed
        return dict(self._admin_call("POST", changes))

    def down(self, kinds: Iterable[str] = ("5xx", "reset"), *, path_prefix: str = "") -> dict[str, Any]:
        """Make every request (under `path_prefix`) fail with one of `kinds` until `clear()`."""
        return self.set_faults(1.0, kinds, script=(), path_prefix=path_prefix)

    def clear(self) -> dict[str, Any]:
        """Pass everything through unchanged again (the rest of the plan as the proxy started with)."""
        return dict(self._admin_call("DELETE"))

    def faults(self) -> dict[str, Any]:
        """The proxy's fault plan plus the unused rest of the script (`remaining`)."""
        return dict(self._admin_call("GET"))

    # -- internals ---------------------------------------------------------------------------------

    def _admin_call(self, method: str, payload: Any = None) -> Any:
        """Call the fault endpoint; ValueError with the proxy's message on 400."""
        if self._admin is None:
            if not self.running:
                raise RuntimeError("FaultProxy is not running; call start() first")
            self._admin = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        response = self._admin.request(method, ADMIN_PREFIX + "faults", json=payload)
        if response.status_code == 400:
            raise ValueError(response.json().get("error", response.text))
        response.raise_for_status()
        return response.json()

    def _start_server(self, attempt: int) -> None:
        """Start the proxy subprocess on a fresh port and wait for its health endpoint."""
        assert self._run_dir is not None
        self._port = self._choose_port()
        config = ProxyConfig(_procs.LOOPBACK, self._port, self.upstream_url, str(self.log_path),
                             self.plan.to_json(), os.getpid())
        config_path = self._run_dir / "proxy.json"
        config.dump(config_path)
        self._launch("darts_aux.local.faultproxy", config_path, f"{ADMIN_PREFIX}healthz", attempt)
