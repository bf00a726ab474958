"""Test servers for unreliable and bad sources: a small STAC API over items a test writes, and on-disk snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from darts_aux.local import _procs
from darts_aux.local.catalog import rustac_executable
from darts_aux.local.gateway import GatewayConfig, GatewayUrls
from darts_aux.local.stac_items import collection_relpath, render_collection, write_json
from darts_aux.local.tiles import RESOLUTIONS, collection_id

ItemFactory = Callable[[str], Sequence[dict[str, Any]]]
"""Given the file server's URL (ending in /files/), the STAC items to serve."""


class ServedItems(GatewayUrls):
    """`rustac serve` over the items a test writes, behind the local gateway (STAC proxy + range file server).

    Files are looked up in `run_dir/files` first, then in `fallback_dirs` (e.g. the local catalog's tile tree),
    so a test can shadow one real COG with a broken file at the same path.
    """

    def __init__(self, run_dir: Path, make_items: ItemFactory, fallback_dirs: Sequence[Path] = ()) -> None:
        self.run_dir = run_dir
        self.make_items = make_items
        self.fallback_dirs = tuple(fallback_dirs)
        self.port = _procs.free_port()
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` of the gateway."""
        return f"http://{_procs.LOOPBACK}:{self.port}"

    @property
    def files_dir(self) -> Path:
        """Files served before the fallback directories (write shadowing files here)."""
        return self.run_dir / "files"

    def __enter__(self) -> ServedItems:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the gateway and rustac (whole process groups)."""
        for proc in reversed(self._procs):
            _procs.stop(proc)
        self._procs.clear()

    def _start(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        items = list(self.make_items(self.files_url))
        inputs = self._write_inputs(items)
        rustac_port = _procs.free_port()
        rustac_url = f"http://{_procs.LOOPBACK}:{rustac_port}"
        log = self.run_dir / "rustac.log"
        self._procs.append(_procs.spawn([rustac_executable(), "serve", "--addr", rustac_url, "--bind",
                                         f"{_procs.LOOPBACK}:{rustac_port}", *inputs], log))
        _procs.wait_healthy(rustac_url + "/", self._procs[-1], log, 30.0)
        write_json(self.run_dir / "upstream.json", {"url": rustac_url})
        config = GatewayConfig(_procs.LOOPBACK, self.port, (str(self.files_dir), *map(str, self.fallback_dirs)),
                               str(self.run_dir / "upstream.json"), str(self.run_dir / "requests.jsonl"), os.getpid())
        config.dump(self.run_dir / "gateway.json")
        log = self.run_dir / "gateway.log"
        self._procs.append(_procs.spawn([sys.executable, "-m", "darts_aux.local.gateway",
                                         str(self.run_dir / "gateway.json")], log))
        _procs.wait_healthy(self.stac_url, self._procs[-1], log, 30.0)

    def _write_inputs(self, items: list[dict[str, Any]]) -> list[str]:
        """Collections of every resolution, then the items, as files for `rustac serve`."""
        paths = []
        for res in RESOLUTIONS:
            mine = [i for i in items if i.get("collection") == collection_id(res)]
            path = self.run_dir / "stac" / collection_relpath(res)
            write_json(path, render_collection(res, mine))
            paths.append(str(path))
        if items:
            batch = self.run_dir / "stac" / "items.json"
            write_json(batch, {"type": "FeatureCollection", "features": items})
            paths.append(str(batch))
        return paths


def disk_state(root: Path) -> dict[str, tuple[int, int]] | None:
    """Every path under `root`: files with their size and mtime, directories by presence (None: no `root`).

    A directory's own mtime is left out: a write probe (a file created and removed again before a fill) moves
    it without changing anything that is stored.
    """
    if not root.exists():
        return None
    state = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        state[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns) if path.is_file() else (0, 0)
    return state
