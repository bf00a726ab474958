"""Soak run: concurrent writers under flaky sources and random SIGKILLs, then every chunk checked pixel for pixel.

    uv run python benchmarks/soak.py --minutes 10

For N minutes, writer processes (6 by default; benchmarks/soak_writer.py) load random overlapping regions of
ArcticDEM 2 m, ArcticDEM 32 m and TCVIS through the public API. Even slots write into a local data directory,
odd slots into one on an S3-compatible server (moto, in its own process). The STAC API, the COG file server and
the Earth Engine stand-in sit behind fault proxies (5xx, resets, truncated bodies, stalls past the timeout); the
stand-in also answers some computePixels with 429/5xx itself and caps concurrent requests; every
`--outage-every` seconds one source fails every request for 30 s. A supervisor SIGKILLs a random writer (one in
the middle of a load when there is one) every `--kill-every` seconds on average and starts it again. Every
`--round-minutes` the writers move on to a fresh pair of data directories, so fills keep happening after a
round's small pools of chunks are full.

Fills run in-process (DARTS_AUX_ORCHESTRATOR=inline: the same tasks and retry policy as the Prefect flows).
Through Prefect, each writer would start its own ephemeral server (20-30 s on a fresh process, again after every
kill) or share one `prefect server start` whose run history is not a record anyway (the manifest is): on two
cores that would soak Prefect's start-up, not the fills.

At the end every chunk any manifest lists is compared with an independent oracle (benchmarks/soak_check.py),
`darts-aux verify` runs on every data directory, and the figures are printed. Exit code 0 only when no pixel is
lost or wrong, every verify is clean, no load failed with an untyped error and no writer crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak_services import BUCKET, FaultSettings, Services, Traffic

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).resolve().with_name("soak_writer.py")
HTTP_TIMEOUT = 30.0
"""Writers' timeout of one source request (seconds); a stall lasts longer."""
WRITER_SETTINGS = {
    "ORCHESTRATOR": "inline",
    "HTTP_TIMEOUT_SECONDS": str(HTTP_TIMEOUT),
    "RETRY_DELAY_SECONDS": "1.0",
    "DOWNLOAD_WORKERS": "2",
    "EE_MAX_IN_FLIGHT": "2",
    "CLAIM_LEASE_SECONDS": "15",
}
"""DARTS_AUX_* of every writer: in-process fills, the production timeout and retry delay, and claims of killed
writers that expire within seconds, so a killed writer's chunks are taken over quickly. Two downloads and two
computePixels requests at a time per writer keep six writers within two shared cores' reach: the Earth Engine
stand-in computes its answers on the same cores, and a 5000 × 1250 px answer took 4-24 s at a load average of 25
(with a 10 s timeout, most of them were abandoned and computed again)."""
EE_CAP = 8
"""computePixels requests the Earth Engine stand-in answers at once (429 beyond); six writers can ask for 12."""
OUTAGE_SECONDS = 30.0
"""How long a source stays down in an outage: past the retries of the requests caught in it (1 + 2 + 4 s of
backoff, GDAL's own retries), so loads fail with a typed error and leave their chunks partial."""
SOURCES = ("stac", "cog", "earthengine")
STOP_GRACE = 180.0
"""Seconds the writers get to finish their current load once the time is up; then they are killed."""


@dataclass(frozen=True)
class Options:
    """The command line."""

    minutes: float
    writers: int
    kill_every: float
    fault_rate: float
    round_minutes: float
    outage_every: float
    seed: int
    run_dir: Path
    catalog_root: Path
    keep_data: bool


def parse_args(argv: list[str]) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="How long the writers run.")
    parser.add_argument("--writers", type=int, default=6, help="Writer processes (at least 2; default 6).")
    parser.add_argument("--kill-every", type=float, default=20.0,
                        help="Mean seconds between two SIGKILLs of a random writer, one in the middle of a load "
                        "when there is one (default 20).")
    parser.add_argument("--fault-rate", type=float, default=0.05,
                        help="Chance that a source request meets a fault (default 0.05).")
    parser.add_argument("--round-minutes", type=float, default=3.0,
                        help="Minutes the writers share one pair of data directories (default 3).")
    parser.add_argument("--outage-every", type=float, default=120.0,
                        help="Seconds between two outages of a random source, 30 s each (default 120).")
    parser.add_argument("--seed", type=int, default=None, help="Seed of every random choice (default: random).")
    parser.add_argument("--run-dir", type=Path, default=None, help="Where data and logs go (default .cache/soak/…).")
    parser.add_argument("--catalog-root", type=Path, default=REPO / ".cache" / "local-catalog",
                        help="The local catalog's files (built there on first use).")
    parser.add_argument("--keep-data", action="store_true", help="Keep the local data directories after a pass.")
    args = parser.parse_args(argv)
    if args.writers < 2:
        parser.error("--writers must be at least 2 (one local, one on S3)")
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = args.run_dir or REPO / ".cache" / "soak" / f"{stamp}-seed{seed}"
    return Options(args.minutes, args.writers, args.kill_every, args.fault_rate, args.round_minutes,
                   args.outage_every, seed,
                   run_dir.resolve(), args.catalog_root.resolve(), args.keep_data)


# -- writers ---------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One writer position: its current process and how many times it was started."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0


@dataclass
class Round:
    """A pair of data directories the writers share for a while."""

    number: int
    local: str
    s3: str

    @property
    def dirs(self) -> dict[str, str]:
        return {"local": self.local, "s3": self.s3}


@dataclass
class Supervisor:
    """Starts, kills and restarts the writers; moves them to fresh data directories every round."""

    options: Options
    env: dict[str, str]
    rng: random.Random
    services: Services
    rounds: list[Round] = field(default_factory=list)
    outages: list[str] = field(default_factory=list)
    kills: int = 0
    crashes: list[str] = field(default_factory=list)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.slots = [Slot(i) for i in range(self.options.writers)]
        (self.run_dir / "writers").mkdir(parents=True, exist_ok=True)

    @property
    def run_dir(self) -> Path:
        return self.options.run_dir

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.json"

    def new_round(self) -> Round:
        """Fresh data directories; writers pick them up before their next load."""
        number = len(self.rounds)
        round_ = Round(number, str(self.run_dir / "data" / f"round-{number}"),
                       f"s3://{BUCKET}/{self.run_dir.name}/round-{number}")
        self.rounds.append(round_)
        self._write_state()
        return round_

    def _write_state(self) -> None:
        """Replace the state file atomically (writers read it at any moment)."""
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"dirs": self.rounds[-1].dirs, "stop": self.stopping}), encoding="utf-8")
        temporary.replace(self.state_path)

    def results_path(self, slot: Slot) -> Path:
        return self.run_dir / "writers" / f"slot-{slot.index}.jsonl"

    def log_path(self, slot: Slot) -> Path:
        return self.run_dir / "writers" / f"slot-{slot.index}.log"

    def start(self, slot: Slot) -> None:
        """Start (or restart) a writer in a slot, with its own seed."""
        seed = self.options.seed * 1000 + slot.index * 100 + slot.starts
        slot.starts += 1
        command = [sys.executable, str(WRITER), str(self.state_path), str(self.results_path(slot)), str(slot.index),
                   str(seed)]
        with self.log_path(slot).open("ab") as log:
            slot.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=REPO, start_new_session=True)

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def kill_one(self) -> None:
        """SIGKILL a random writer in the middle of a load (else any live one) and start it again."""
        live = [s for s in self.slots if s.proc is not None and s.proc.poll() is None]
        loading = [s for s in live if self.loading(s)]
        if not live:
            return
        slot = self.rng.choice(loading or live)
        _kill_group(slot.proc)
        self.kills += 1
        self.start(slot)

    def loading(self, slot: Slot) -> bool:
        """Whether the writer's last result line opened a load it has not finished."""
        try:
            lines = self.results_path(slot).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return False
        return bool(lines) and json.loads(lines[-1])["event"] == "start"

    def restart_exited(self) -> None:
        """A writer that ended on its own before the stop is a crash: note it and start it again."""
        for slot in self.slots:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            if not self.stopping:
                self.crashes.append(f"writer {slot.index} exited with {slot.proc.returncode}; its log ends: "
                                    f"{_tail(self.log_path(slot))}")
                self.start(slot)

    def stop_all(self, grace: float) -> int:
        """Tell the writers to stop after their current load; kill those still running after `grace` seconds."""
        self.stopping = True
        self._write_state()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(s.proc and s.proc.poll() is None for s in self.slots):
            time.sleep(0.5)
        late = [s for s in self.slots if s.proc and s.proc.poll() is None]
        for slot in late:
            _kill_group(slot.proc)
        for slot in self.slots:
            if slot.proc and slot.proc.returncode not in (0, -signal.SIGKILL):
                self.crashes.append(f"writer {slot.index} exited with {slot.proc.returncode} while stopping; "
                                    f"its log ends: {_tail(self.log_path(slot))}")
        return len(late)

    def run(self, seconds: float, progress: Any) -> None:
        """Supervise until the time is up: kills at random moments, new rounds on schedule, progress lines."""
        started = time.monotonic()
        next_kill = started + self.rng.expovariate(1.0 / self.options.kill_every)
        next_round = started + self.options.round_minutes * 60
        next_report = started + 30
        next_outage, outage_ends = started + self.options.outage_every / 2, None
        while (now := time.monotonic()) < started + seconds:
            self.restart_exited()
            if outage_ends is None and now >= next_outage:
                self.outages.append(self.rng.choice(SOURCES))
                self.services.outage(self.outages[-1])
                outage_ends, next_outage = now + OUTAGE_SECONDS, now + self.options.outage_every
            if outage_ends is not None and now >= outage_ends:
                self.services.restore()
                outage_ends = None
            if now >= next_kill:
                self.kill_one()
                next_kill = now + self.rng.expovariate(1.0 / self.options.kill_every)
            if now >= next_round and started + seconds - now > 60:
                self.new_round()
                next_round = now + self.options.round_minutes * 60
            if now >= next_report:
                progress(now - started)
                next_report = now + 30
            time.sleep(0.25)
        if outage_ends is not None:
            self.services.restore()


def _kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a writer's process group (the writer was started in its own session) and reap it."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def writer_env(services: Services, run_dir: Path) -> dict[str, str]:
    """The writers' environment: ours without DARTS_AUX_*/PREFECT_API_URL, plus the sources and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARTS_AUX_") and k != "PREFECT_API_URL"}
    env.update(services.writer_env())
    env.update({f"DARTS_AUX_{k}": v for k, v in WRITER_SETTINGS.items()})
    env.update({"PREFECT_HOME": str(run_dir / "prefect"), "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"})
    return env


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Loads:
    """What the writers' result files say."""

    done: Counter[str] = field(default_factory=Counter)
    filled: int = 0
    """Loads done that filled chunks (the others read settled chunks only)."""
    typed: Counter[str] = field(default_factory=Counter)
    untyped: list[dict[str, Any]] = field(default_factory=list)
    interrupted: int = 0
    returned_bytes: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.typed.values()) + len(self.untyped)

    @classmethod
    def read(cls, paths: list[Path]) -> Loads:
        """Count each load by how it ended; a `start` with no end of its own was interrupted by a kill."""
        loads = cls()
        for path in paths:
            open_load = False
            for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
                record = json.loads(line)
                if record["event"] == "start":
                    loads.interrupted += open_load
                    open_load = True
                    continue
                open_load = False
                loads.add(record)
            loads.interrupted += open_load
        return loads

    def add(self, record: dict[str, Any]) -> None:
        """Count one finished load."""
        self.seconds.append(record["seconds"])
        if record["event"] == "done":
            self.done[record["product"]] += 1
            self.filled += bool(record.get("filled"))
            self.returned_bytes += record["bytes"]
        elif record["typed"]:
            self.typed[record["error"]] += 1
        else:
            self.untyped.append(record)


# -- the run ---------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run the soak and print its figures; the exit code says whether anything was lost."""
    options = parse_args(argv)
    options.run_dir.mkdir(parents=True, exist_ok=True)
    faults = FaultSettings(options.fault_rate, HTTP_TIMEOUT + 2, EE_CAP, options.seed)
    print(f"soak run: {options.minutes:g} minutes, {options.writers} writers, seed {options.seed}, "
          f"fault rate {options.fault_rate:g}, a kill every {options.kill_every:g} s on average; "
          f"logs in {options.run_dir}", flush=True)
    print(f"machine load at the start: {_uptime()}", flush=True)
    with Services(options.catalog_root, options.run_dir, faults) as services:
        env = writer_env(services, options.run_dir)
        supervisor = Supervisor(options, env, random.Random(options.seed), services)
        supervisor.new_round()
        supervisor.start_all()
        loads_so_far = lambda: Loads.read([supervisor.results_path(s) for s in supervisor.slots])  # noqa: E731

        def progress(elapsed: float) -> None:
            loads = loads_so_far()
            print(f"  {elapsed / 60:4.1f} min: {sum(loads.done.values())} loads done, {loads.failed} failed, "
                  f"{supervisor.kills} kills, {services.traffic().total_faults} faults injected; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)

        supervisor.run(options.minutes * 60, progress)
        load_at_end = _uptime()
        late = supervisor.stop_all(STOP_GRACE)
        traffic = services.traffic()
        services.keep_logs(options.run_dir / "servers")
        services.quiet()
        loads = loads_so_far()
        print(f"writers stopped ({late} still loading after {STOP_GRACE:.0f} s were killed); checking", flush=True)
        services.use_s3_here()
        report = check_everything(options, services, supervisor.rounds)
        stored = stored_bytes(services, supervisor.rounds)
    verdict = print_report(options, supervisor, loads, traffic, report, stored, load_at_end)
    if verdict and not options.keep_data:
        shutil.rmtree(options.run_dir / "data", ignore_errors=True)
    return 0 if verdict else 1


@dataclass
class CheckReport:
    """The end check over every data directory."""

    cubes: list[Any]
    verifies: list[Any]
    seconds: float


def check_everything(options: Options, services: Services, rounds: list[Round]) -> CheckReport:
    """Every chunk of every product in every data directory against the oracles, then `darts-aux verify`."""
    from soak_check import Oracles, check_product, run_verify, soaked_products

    started = time.perf_counter()
    dirs = [d for r in rounds for d in (r.local, r.s3)]
    oracles = Oracles(options.catalog_root, services.catalog.spec)
    cubes = [c for product in soaked_products() for c in check_product(product, dirs, oracles)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARTS_AUX_")}
    verifies = [run_verify(d, env) for d in dirs]
    return CheckReport(cubes, verifies, time.perf_counter() - started)


def stored_bytes(services: Services, rounds: list[Round]) -> dict[str, int]:
    """Bytes the data directories take: local folders on disk, S3 prefixes on the server."""
    local = sum(f.stat().st_size for r in rounds for f in Path(r.local).rglob("*") if f.is_file())
    s3 = sum(services.s3.stored_bytes(r.s3.split(f"{BUCKET}/", 1)[1]) for r in rounds)
    return {"local": local, "s3": s3}


def print_report(options: Options, supervisor: Supervisor, loads: Loads, traffic: Traffic, report: CheckReport,
                 stored: dict[str, int], load_at_end: str) -> bool:
    """Print the figures; True when the run passes."""
    lost = sum(c.lost for c in report.cubes)
    wrong = sum(c.wrong for c in report.cubes)
    problems = [f"{c.data_dir} {c.product}: {p}" for c in report.cubes for p in c.problems]
    bad_verifies = [v for v in report.verifies if not v.ok]
    full, partial = sum(c.full for c in report.cubes), sum(c.partial for c in report.cubes)
    done = sum(loads.done.values())
    print()
    print(f"soak figures (seed {options.seed}, {options.minutes:g} minutes, {options.writers} writers, "
          f"{len(supervisor.rounds)} {_plural(len(supervisor.rounds), 'round')} of data directories, "
          f"fills inline):")
    print(f"  loads done: {done} ({_counts(loads.done)}), {loads.filled} of them with chunks to fill, "
          f"{_size(loads.returned_bytes)} returned")
    print(f"  loads failed: {loads.failed} ({_counts(loads.typed) or 'none typed'}); "
          f"untyped (bugs): {len(loads.untyped)}")
    print(f"  loads interrupted by kills: {loads.interrupted}")
    print(f"  kills: {supervisor.kills}; writer crashes: {len(supervisor.crashes)}")
    print(f"  outages of {OUTAGE_SECONDS:.0f} s: {len(supervisor.outages)} ({_counts(Counter(supervisor.outages))})")
    print(f"  faults injected: {traffic.total_faults} — "
          + "; ".join(f"{source} {_counts(kinds)}" for source, kinds in sorted(traffic.faults.items())))
    print(f"  requests through the proxies: {_counts(traffic.requests)}")
    print(f"  bytes from the sources: {_size(sum(traffic.bytes_sent.values()))} "
          f"({', '.join(f'{k} {_size(v)}' for k, v in sorted(traffic.bytes_sent.items()))}); "
          f"bytes stored: local {_size(stored['local'])}, S3 {_size(stored['s3'])}")
    per_product: Counter[str] = Counter()
    for cube in report.cubes:
        per_product[cube.product] += cube.checked
    print(f"  chunks checked: {full + partial} ({full} full, {partial} partial; {_counts(per_product)}) in "
          f"{len(report.verifies)} data directories, in {report.seconds:.0f} s")
    print(f"  lost pixels: {lost}; wrong pixels: {wrong}")
    print(f"  darts-aux verify: {len(report.verifies) - len(bad_verifies)} of {len(report.verifies)} data "
          f"directories clean")
    for v in report.verifies:
        if v.via != "darts-aux verify":
            print(f"    {v.data_dir}: checked through {v.via}")
    print(f"  machine load when the writers stopped: {load_at_end}")
    for line in problems[:20] + [f"verify {v.data_dir} (exit {v.returncode}): {v.output[-800:]}"
                                 for v in bad_verifies] + supervisor.crashes:
        print(f"  PROBLEM {line}")
    for record in loads.untyped[:5]:
        print(f"  UNTYPED {record['error']} loading {record['product']} {record['bounds']} into "
              f"{record['data_dir']}:\n{record['traceback']}")
    passed = (lost == 0 and wrong == 0 and not problems and not bad_verifies and not loads.untyped
              and not supervisor.crashes and done > 0)
    print(f"verdict: {'PASS' if passed else 'FAIL'}")
    return passed


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common())


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
