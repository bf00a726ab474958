"""Storage study for an AlphaEarth (Satellite Embedding) cube: value type and codec for one 1000² px × 64 band chunk.

Usage::

    uv run python benchmarks/alphaearth_storage.py            # full run (~5 min on 2 cores), writes the JSON
    uv run python benchmarks/alphaearth_storage.py --quick    # 3 candidates, prints only

The chunk is stand-in data from the local Earth Engine's formula (`darts_aux.local.earthengine.alphaearth`): one
year on the ArcticDEM 10 m grid, 64 float64 bands that are de-quantised int8 codes, with its masked pixels (NaN in
the float candidates, -128 in the int8 one). Candidates: the value type Earth Engine answers (float64), float32,
float16 (lossy) and the int8 codes of the published quantisation, each with blosc-lz4 / blosc-zstd (shuffle,
bitshuffle or none, several levels) or plain zstd, as numcodecs encodes them for zarr. Two layouts: 64 band planes
of 1000² (one zarr array per band, or a (64, y, x) array) and pixel-interleaved (y, x, 64). Per candidate and
chunk: compressed size and ratio (against float64, Earth Engine's type, and against the candidate's own bytes),
encode and decode seconds (single thread, best of the repeats), and whether the decoded chunk gives back Earth
Engine's float64 values exactly (directly, or through the int8 codes they are made of). Results go to
`benchmarks/alphaearth_storage_results.json`; the README section is written by hand from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
from numcodecs import Blosc, Zstd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from darts_aux.local.earthengine import alphaearth as ae  # noqa: E402

RESULTS = HERE / "alphaearth_storage_results.json"
CHUNK = 1000
"""Chunk edge in pixels (the fill chunk ArcticDEM uses, 10 km at 10 m)."""
YEAR = 2021
ORIGIN = (-1_960_000.0, 770_000.0)
"""Top-left corner of the chunk in EPSG:3413 metres (northern Alaska, on the ArcticDEM 10 m grid)."""


@dataclass
class Row:
    """One measured candidate."""

    dtype: str
    codec: str
    layout: str
    stored_bytes: int
    ratio_vs_float64: float
    ratio_vs_own: float
    encode_s: float
    decode_s: float
    exact: bool
    """Decoded values equal Earth Engine's float64 values bit for bit (int8: after the published de-quantisation)."""
    codes_recovered: bool
    """The int8 codes (and so the exact float64 values) can be recomputed from the decoded values."""
    max_abs_error: float


def chunk_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values float64 (64, y, x) NaN where masked, codes int8 (64, y, x), valid (y, x)) of the stand-in chunk."""
    x = ORIGIN[0] + (np.arange(CHUNK) + 0.5) * ae.NATIVE_PIXEL
    y = ORIGIN[1] - (np.arange(CHUNK) + 0.5) * ae.NATIVE_PIXEL
    k, j = ae.native_index(x, y[:, None])
    started = time.perf_counter()
    codes, valid = ae.embedding_codes(YEAR, k, j)
    seconds_codes = time.perf_counter() - started
    values = ae.dequantise(codes)
    seconds_values = time.perf_counter() - started
    print(f"Stand-in chunk {CHUNK}² × 64 for {YEAR}: codes in {seconds_codes:.2f} s, float64 values in "
          f"{seconds_values:.2f} s; {100 * (1 - valid.mean()):.1f} % of the pixels are masked.")
    return np.ascontiguousarray(np.moveaxis(values, -1, 0)), np.ascontiguousarray(np.moveaxis(codes, -1, 0)), valid


def codecs(quick: bool) -> dict[str, Callable[[int], Any]]:
    """Codec name → factory(typesize) (typesize: bytes per value, for blosc's shuffle)."""
    shuffles = {"shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE, "noshuffle": Blosc.NOSHUFFLE}

    def blosc(cname: str, level: int, shuffle: str) -> Callable[[int], Any]:
        return lambda typesize: Blosc(cname=cname, clevel=level, shuffle=shuffles[shuffle], blocksize=0)

    if quick:
        return {"blosc-lz4-5-shuffle": blosc("lz4", 5, "shuffle"), "blosc-zstd-3-shuffle": blosc("zstd", 3, "shuffle")}
    table: dict[str, Callable[[int], Any]] = {}
    for shuffle in shuffles:
        table[f"blosc-lz4-5-{shuffle}"] = blosc("lz4", 5, shuffle)
        for level in (1, 3, 5):
            table[f"blosc-zstd-{level}-{shuffle}"] = blosc("zstd", level, shuffle)
    table["zstd-3"] = lambda typesize: Zstd(level=3)
    table["zstd-9"] = lambda typesize: Zstd(level=9)
    return table


REFERENCE_CODECS = ("blosc-lz4-5-shuffle", "blosc-zstd-3-shuffle")
"""The codecs every value type is measured with (the library's ArcticDEM and TCVIS choices)."""


def wanted(dtype: str, codec: str) -> bool:
    """Which (type, codec) pairs run: all for int8, no level 5 or zstd-9 for float16/32, the references for float64.

    The larger types take 2-8 times longer per chunk and their ranking between codecs follows the int8 one.
    """
    if dtype == "int8" or codec in REFERENCE_CODECS:
        return True
    if dtype == "float64":
        return False
    return "-5-" not in codec and codec != "zstd-9"


def encode_all(codec: Any, planes: list[np.ndarray]) -> tuple[list[bytes], float]:
    started = time.perf_counter()
    encoded = [codec.encode(p) for p in planes]
    return encoded, time.perf_counter() - started


def decode_all(codec: Any, encoded: list[bytes], like: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    started = time.perf_counter()
    decoded = [np.frombuffer(codec.decode(e), dtype=p.dtype).reshape(p.shape) for e, p in zip(encoded, like)]
    return decoded, time.perf_counter() - started


def measure(dtype: str, stored: np.ndarray, codec_name: str, factory: Callable[[int], Any], layout: str,
            truth: np.ndarray, codes: np.ndarray, repeats: int) -> Row:
    """Encode and decode the chunk `repeats` times; keep the best times and check the decoded values."""
    if layout == "band planes":
        planes = [stored[b] for b in range(stored.shape[0])]
    else:
        planes = [np.ascontiguousarray(np.moveaxis(stored, 0, -1))]
    codec = factory(stored.dtype.itemsize)
    encode_s = decode_s = float("inf")
    for _ in range(repeats):
        encoded, seconds = encode_all(codec, planes)
        encode_s = min(encode_s, seconds)
        decoded, seconds = decode_all(codec, encoded, planes)
        decode_s = min(decode_s, seconds)
    back = np.stack(decoded) if layout == "band planes" else np.moveaxis(decoded[0], -1, 0)
    if dtype == "int8":
        values = ae.dequantise(back)
        recovered = np.array_equal(back, codes)
    else:
        values = back.astype(np.float64)
        recovered = np.array_equal(ae.quantise(values), codes)
    both = ~np.isnan(truth)
    exact = bool(np.array_equal(np.isnan(values), ~both) and np.array_equal(values[both], truth[both]))
    size = sum(len(e) for e in encoded)
    return Row(dtype, codec_name, layout, size, round(truth.size * 8 / size, 3), round(stored.nbytes / size, 3),
               round(encode_s, 4), round(decode_s, 4), exact, bool(recovered),
               float(np.abs(values[both] - truth[both]).max()))


def realism(values: np.ndarray, codes: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """Figures that say how noisy the stand-in is: code entropy, neighbour similarity, norms."""
    counts = np.bincount(codes[:, valid].view(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * np.log2(p)).sum())
    v = np.moveaxis(values, 0, -1)
    pairs = valid[:, 1:] & valid[:, :-1]
    cosine = (v[:, 1:] * v[:, :-1]).sum(-1)[pairs]
    norms = np.linalg.norm(v[valid], axis=-1)
    return {
        "code_entropy_bits": round(entropy, 3),
        "order0_ratio_bound_int8": round(8 / entropy, 3),
        "neighbour_cosine_mean": round(float(cosine.mean()), 3),
        "neighbour_cosine_p10": round(float(np.percentile(cosine, 10)), 3),
        "norm_minus_1_max": round(float(np.abs(norms - 1).max()), 4),
        "masked_fraction": round(float(1 - valid.mean()), 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three candidates, no JSON")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    numcodecs.blosc.set_nthreads(1)
    load_before = os.getloadavg()

    truth, codes, valid = chunk_data()
    candidates: dict[str, np.ndarray] = {
        "int8": np.where(np.isnan(truth), ae.NODATA_CODE, codes).astype(np.int8),
        "float16": truth.astype(np.float16),
        "float32": truth.astype(np.float32),
        "float64": truth,
    }
    if args.quick:
        candidates = {k: candidates[k] for k in ("int8", "float32")}
    rows: list[Row] = []
    started = time.perf_counter()
    for dtype, stored in candidates.items():
        for name, factory in codecs(args.quick).items():
            if not wanted(dtype, name):
                continue
            for layout in ("band planes", "pixel-interleaved"):
                if layout == "pixel-interleaved" and not (dtype in ("int8", "float32") and name in REFERENCE_CODECS):
                    continue
                row = measure(dtype, stored, name, factory, layout, truth, codes, args.repeats)
                rows.append(row)
                print(f"{row.dtype:8s} {row.codec:24s} {row.layout:17s} {row.stored_bytes / 1e6:8.1f} MB "
                      f"×{row.ratio_vs_float64:6.2f} vs f64 ×{row.ratio_vs_own:5.2f} own  enc {row.encode_s:6.3f} s "
                      f"dec {row.decode_s:6.3f} s  exact={row.exact} codes={row.codes_recovered} "
                      f"max|err|={row.max_abs_error:.2e}", flush=True)
    figures = realism(truth, codes, valid)
    print("Stand-in realism:", figures)
    if args.quick:
        return
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "numcodecs": numcodecs.__version__,
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "chunk": {"shape": [64, CHUNK, CHUNK], "year": YEAR, "origin_epsg3413": list(ORIGIN),
                  "float64_bytes": truth.size * 8, "threads": 1, "repeats": args.repeats},
        "stand_in": figures,
        "rows": [asdict(r) for r in rows],
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"Wrote {RESULTS.relative_to(HERE.parent)}.")


if __name__ == "__main__":
    main()
