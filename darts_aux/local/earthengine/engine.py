"""LocalEarthEngine: the loopback Earth Engine REST server as a context-managed subprocess.

    with LocalEarthEngine() as local_ee:
        ee.Initialize(credentials=AnonymousCredentials(), project=local_ee.project, url=local_ee.url)
        local_ee.set_faults([429, 503])          # the next two computePixels requests fail
        local_ee.requests()                      # what the server saw

The server (uvicorn + starlette, `python -m darts_aux.local.earthengine.server`) runs in its own session on
a free 127.0.0.1 port (or the `port` given); it is stopped (whole process group) on `stop()`, on errors during
`start()`, at interpreter exit, and (Linux, main thread) when this process dies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from darts_aux.local import _procs
from darts_aux.local._server import LocalServer, read_request_log
from darts_aux.local.earthengine.config import ServerConfig
from darts_aux.local.earthengine.faults import Fault, script_json

DEFAULT_PROJECT = "local-project"


class LocalEarthEngine(LocalServer):
    """A running (or startable) local Earth Engine REST server for the unmodified `earthengine-api` client."""

    run_prefix = "darts-aux-ee-"

    def __init__(
        self, project: str = DEFAULT_PROJECT, *, startup_timeout: float = 30.0, port: int | None = None
    ) -> None:
        self.project = project
        super().__init__(startup_timeout, port)

    def __repr__(self) -> str:
        return f"LocalEarthEngine(project={self.project!r}, {self.url if self.running else 'stopped'})"

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`: the `url` to give `ee.Initialize` (no trailing slash)."""
        return super().url

    @property
    def offline_env(self) -> dict[str, str]:
        """Environment that keeps the client's deprecation-catalog fetch (urllib, HTTPS) on loopback.

        The server refuses CONNECT with 403, so urllib fails at once without a DNS lookup. Set it before
        the process's first `urllib.request.urlopen` (urllib caches its proxy settings) and only where
        no real HTTPS traffic is wanted.
        """
        return {"https_proxy": self.url, "HTTPS_PROXY": self.url}

    # -- request log and statistics ----------------------------------------------------------------

    def requests(self, path_contains: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first (optionally only paths containing `path_contains`).

        Each record: time, method, path (+query), status, bytes, seconds; computePixels requests also carry
        in_flight (admitted requests in progress at arrival), concurrent (admitted ones including itself;
        absent if rejected), grid {width, height}, band_ids, fault ("cap", "script" or "random"), message, and
        ready_after (seconds from arrival until its pixels were computed; answered ones only).
        """
        records = read_request_log(self.log_path)
        return [r for r in records if path_contains is None or path_contains in r["path"]]

    def compute_requests(self) -> list[dict[str, Any]]:
        """Logged computePixels requests."""
        return self.requests(":computePixels")

    def reset_log(self) -> None:
        """Forget the logged requests and the server's counters (including `max_in_flight_seen`)."""
        self.log_path.write_text("", encoding="utf-8")
        self._admin_call("POST", "/_admin/reset")

    def stats(self) -> dict[str, int]:
        """Server counters since the last reset.

        Keys: in_flight, max_in_flight_seen, compute_pixels, rejected_by_cap, faults.
        """
        return dict(self._admin_call("GET", "/_admin/stats"))

    def max_in_flight_seen(self) -> int:
        """Most computePixels requests the server was answering at once (admitted ones only) since the last reset."""
        return int(self.stats()["max_in_flight_seen"])

    # -- fault injection ---------------------------------------------------------------------------

    def set_faults(
        self,
        script: Sequence[int | str | Mapping[str, Any] | Fault] | None = None,
        *,
        probability: float | None = None,
        statuses: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Script the next computePixels answers (e.g. [429, 503, "truncate", "wrong-shape"]) and/or random failures.

        Only the arguments given change. `probability` > 0 makes each admitted request without a scripted
        fault fail with a status drawn from `statuses` (default [503]); `seed` makes the draws repeatable.
        Returns the server's fault state.
        """
        changes: dict[str, Any] = {}
        if script is not None:
            changes["script"] = script_json(script)
        if probability is not None:
            changes["probability"] = probability
        if statuses is not None:
            changes["statuses"] = list(statuses)
        if seed is not None or probability is not None:
            changes["seed"] = seed
        return self._configure(changes)

    def set_delay(self, seconds: float) -> dict[str, Any]:
        """Make every admitted computePixels request wait `seconds` before it is answered."""
        return self._configure({"delay": float(seconds)})

    def set_max_in_flight(self, n: int | None) -> dict[str, Any]:
        """Answer 429 at once to a computePixels request arriving while `n` are being answered (None: no cap)."""
        return self._configure({"max_in_flight": n})

    def clear_faults(self) -> dict[str, Any]:
        """Back to a healthy server: no script, no random faults, no delay, no cap."""
        return dict(self._admin_call("DELETE", "/_admin/faults"))

    def faults(self) -> dict[str, Any]:
        """The server's fault settings plus the unused rest of the script (`remaining`)."""
        return dict(self._admin_call("GET", "/_admin/faults"))

    # -- internals ---------------------------------------------------------------------------------

    def _configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(self._admin_call("POST", "/_admin/faults", changes))

    def _admin_call(self, method: str, path: str, payload: Any = None) -> Any:
        """Call an admin endpoint; ValueError with the server's message on 400."""
        if self._admin is None:
            if not self.running:
                raise RuntimeError("LocalEarthEngine is not running; call start() first")
            self._admin = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        response = self._admin.request(method, path, json=payload)
        if response.status_code == 400:
            raise ValueError(response.json().get("error", response.text))
        response.raise_for_status()
        return response.json()

    def _require_run_dir(self) -> Path:
        if self._run_dir is None:
            raise RuntimeError("LocalEarthEngine is not running; call start() first")
        return self._run_dir

    def _start_server(self, attempt: int) -> None:
        """Start the server subprocess on its port and wait for /healthz."""
        run_dir = self._require_run_dir()
        self._port = self._choose_port()
        config = ServerConfig(
            host=_procs.LOOPBACK,
            port=self._port,
            project=self.project,
            log_path=str(self.log_path),
            parent_pid=os.getpid(),
        )
        config_path = run_dir / "server.json"
        config.dump(config_path)
        self._launch("darts_aux.local.earthengine.server", config_path, "/healthz", attempt)
