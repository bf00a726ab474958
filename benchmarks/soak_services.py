"""The servers a soak run talks to: the local catalog and Earth Engine, each behind a fault proxy, and an S3 server.

Everything listens on loopback and is stopped when the `Services` context ends. The writers only ever see the
proxies' addresses, so every STAC search, COG range read and computePixels request can meet an injected fault;
the Earth Engine stand-in adds its own (random 429/5xx answers and a concurrency cap) behind its proxy. An
outage makes one source fail every request for a while, long enough for loads to run out of retries.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from darts_aux.local import LocalCatalog, _procs
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.faults import FAULT_KINDS, FaultProxy

BUCKET = "darts-aux-soak"
S3_ACCESS_KEY = "soak-access-key"
S3_SECRET_KEY = "soak-secret-key"
S3_REGION = "us-east-1"
EE_FAULT_STATUSES = (429, 500, 503)
"""What the Earth Engine stand-in answers when it injects a fault of its own."""


@dataclass(frozen=True)
class FaultSettings:
    """How flaky the sources are during a soak run."""

    probability: float
    """Chance that a request through a proxy meets a fault (and that computePixels gets a 429/5xx of its own)."""
    stall_seconds: float
    """How long a stalled request stays silent: past the writers' HTTP timeout."""
    ee_max_in_flight: int
    """computePixels requests the Earth Engine stand-in answers at once before it answers 429."""
    seed: int


class MotoServer:
    """moto's S3 server in its own process (its own interpreter: writers' traffic does not compete with ours)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = _procs.free_port()
        self._proc = None

    @property
    def endpoint(self) -> str:
        """`http://127.0.0.1:PORT`."""
        return f"http://{_procs.LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a process at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_REGION": S3_REGION, "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self) -> MotoServer:
        """Start the server, wait until it answers, create the bucket."""
        command = [str(Path(sys.executable).with_name("moto_server")), "-H", _procs.LOOPBACK, "-p", str(self.port)]
        self._proc = _procs.spawn(command, self.log_path)
        _procs.wait_healthy(self.endpoint + "/", self._proc, self.log_path, 60.0)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def stop(self) -> None:
        """Stop the server (its objects are gone with it)."""
        _procs.stop(self._proc)
        self._proc = None

    def client(self) -> Any:
        """A boto3 client of the server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_ACCESS_KEY,
                            aws_secret_access_key=S3_SECRET_KEY, region_name=S3_REGION)

    def stored_bytes(self, prefix: str) -> int:
        """Bytes of every object under a key prefix."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sum(obj["Size"] for page in pages for obj in page.get("Contents", []))


class Services:
    """Catalog, Earth Engine, their fault proxies and the S3 server, started and stopped together."""

    def __init__(self, catalog_root: Path, run_dir: Path, faults: FaultSettings) -> None:
        self.catalog = LocalCatalog(catalog_root)
        self.earth_engine = LocalEarthEngine()
        self.s3 = MotoServer(run_dir / "moto.log")
        self.faults = faults
        self._stack = ExitStack()
        self.source_proxy: FaultProxy | None = None
        self.ee_proxy: FaultProxy | None = None

    def __enter__(self) -> Services:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _start(self) -> None:
        stack, faults = self._stack, self.faults
        stack.enter_context(self.catalog)
        stack.enter_context(self.earth_engine)
        stack.callback(self.s3.stop)
        self.s3.start()
        self.source_proxy = stack.enter_context(self._proxy(self.catalog.base_url, faults.seed))
        self.ee_proxy = stack.enter_context(self._proxy(self.earth_engine.url, faults.seed + 1))
        self.earth_engine.set_faults(probability=faults.probability, statuses=EE_FAULT_STATUSES, seed=faults.seed + 2)
        self.earth_engine.set_max_in_flight(faults.ee_max_in_flight)

    def _proxy(self, upstream: str, seed: int) -> FaultProxy:
        f = self.faults
        return FaultProxy(upstream, f.probability, FAULT_KINDS, seed=seed, stall_seconds=f.stall_seconds)

    def writer_env(self) -> dict[str, str]:
        """What a writer process needs besides its own settings: where the sources and the S3 server are."""
        assert self.source_proxy is not None and self.ee_proxy is not None
        return {
            "DARTS_AUX_STAC_URL": self.source_proxy.via(self.catalog.stac_url),
            "DARTS_AUX_EE_URL": self.ee_proxy.url,
            "DARTS_AUX_EE_PROJECT": self.earth_engine.project,
            "DARTS_AUX_EE_CREDENTIALS": "anonymous",
            **self.earth_engine.offline_env,  # the client's stray HTTPS fetch goes to the stand-in and fails at once
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
            **self.s3.env,
        }

    def use_s3_here(self) -> None:
        """Point this process at the S3 server too (the end check reads the S3 cubes)."""
        os.environ.update(self.s3.env)

    def quiet(self) -> None:
        """Stop injecting faults (the end check runs against healthy sources)."""
        for proxy in (self.source_proxy, self.ee_proxy):
            if proxy is not None:
                proxy.clear()
        self.earth_engine.clear_faults()

    def outage(self, source: str) -> None:
        """Make one source fail every request (5xx or reset) until `restore`: 'stac', 'cog' or 'earthengine'."""
        proxy, prefix = self._proxies()[source]
        proxy.down(path_prefix=prefix)

    def restore(self) -> None:
        """Back to the random faults of the run on every proxy (after an outage)."""
        for proxy in (self.source_proxy, self.ee_proxy):
            assert proxy is not None
            proxy.set_faults(self.faults.probability, FAULT_KINDS, script=(), path_prefix="")

    def _proxies(self) -> dict[str, tuple[FaultProxy, str]]:
        """Each source's proxy and the path prefix of its requests there."""
        assert self.source_proxy is not None and self.ee_proxy is not None
        return {"stac": (self.source_proxy, "/stac/"), "cog": (self.source_proxy, "/files/"),
                "earthengine": (self.ee_proxy, "")}

    def keep_logs(self, folder: Path) -> None:
        """Copy the servers' request logs into `folder` (their own run directories go when they stop)."""
        assert self.source_proxy is not None and self.ee_proxy is not None
        folder.mkdir(parents=True, exist_ok=True)
        for name, server in (("source-proxy", self.source_proxy), ("earthengine-proxy", self.ee_proxy),
                             ("earthengine", self.earth_engine), ("catalog", self.catalog)):
            shutil.copyfile(server.log_path, folder / f"{name}.jsonl")

    def traffic(self) -> Traffic:
        """What the proxies and the Earth Engine stand-in logged (read before the servers stop: logs go with them)."""
        assert self.source_proxy is not None and self.ee_proxy is not None
        return Traffic.from_logs(self.source_proxy.requests(), self.ee_proxy.requests(),
                                 self.earth_engine.compute_requests())


@dataclass(frozen=True)
class Traffic:
    """Requests, injected faults and bytes per source, from the servers' own logs."""

    requests: Counter[str]
    faults: dict[str, Counter[str]]
    """Per source ('stac', 'cog', 'earthengine'): faults by kind; 'earthengine-server' holds the stand-in's own."""
    bytes_sent: Counter[str]

    @classmethod
    def from_logs(cls, source_log: list[dict[str, Any]], ee_log: list[dict[str, Any]],
                  compute_log: list[dict[str, Any]]) -> Traffic:
        """Count the proxies' records and the stand-in's own faults (its `cap`, `random` and `script` answers)."""
        requests: Counter[str] = Counter()
        faults: dict[str, Counter[str]] = {}
        sent: Counter[str] = Counter()
        tagged = [(_source_of(r), r) for r in source_log] + [("earthengine", r) for r in ee_log]
        for source, record in tagged:
            requests[source] += 1
            sent[source] += int(record.get("bytes") or 0)
            if record["fault"] != "none":
                faults.setdefault(source, Counter())[record["fault"]] += 1
        own = Counter(f"{r['status']} ({r['fault']})" for r in compute_log if r.get("fault"))
        if own:
            faults["earthengine-server"] = own
        return cls(requests, faults, sent)

    @property
    def total_faults(self) -> int:
        """Every fault injected, by the proxies and by the stand-in."""
        return sum(sum(kinds.values()) for kinds in self.faults.values())


def _source_of(record: dict[str, Any]) -> str:
    """Which server behind the catalog's proxy a request went to."""
    return "cog" if record["path"].startswith("/files/") else "stac"
