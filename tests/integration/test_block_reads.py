"""A fill of many chunks fetches each COG block once: the file server's own log shows no byte twice."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox

from darts_aux import load_arcticdem
from darts_aux.grid import ChunkGrid, roi_window
from darts_aux.local import LocalCatalog
from darts_aux.products import arcticdem
from darts_aux.settings import get_settings

PRODUCT = arcticdem(2)
ITEM = "72_46_1_1_2m_v4.1"
REGION = GeoBox.from_bbox((544_000, 3_144_200, 549_800, 3_149_800), "EPSG:3413", resolution=2)
"""3 × 3 chunks of 1000² px inside one 2 m tile's core (no neighbour's buffer), partly over its data region: the tile's
pixel rows 0–3000 and columns 22,000–25,000, so its blocks in rows 0–5 and columns 42–48 (of 512² px)."""
GDAL_PIECE = 16_384
"""GDAL's /vsicurl/ reads and caches files in pieces of this many bytes (CPL_VSIL_CURL_CHUNK_SIZE)."""
RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def block_table(path: Path) -> tuple[int, dict[tuple[int, int], tuple[int, int]]]:
    """(first byte of any full-resolution block, {(row, col): (offset, size)}) of band 1, from the TIFF directory."""
    with rasterio.open(path) as src:
        height, width = src.block_shapes[0]
        blocks = {}
        for row, col in itertools.product(range(-(-src.height // height)), range(-(-src.width // width))):
            offset = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1) or 0)
            size = int(src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1) or 0)
            if size:
                blocks[(row, col)] = (offset, size)
    return min(offset for offset, _ in blocks.values()), blocks


def covered_bytes(ranges: list[tuple[int, int]], start: int, end: int) -> int:
    """How many bytes of [start, end) the (possibly overlapping) ranges cover."""
    marks = np.zeros(end - start, bool)
    for a, b in ranges:
        if a < end and b > start:
            marks[max(a, start) - start:min(b, end) - start] = True
    return int(marks.sum())


def test_neighbouring_chunks_fetch_their_shared_blocks_once(use_catalog: LocalCatalog, inline: None,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GDAL's own /vsicurl/ cache (16 MB) would hide re-reads in a region this small: without it, only ours shares
    monkeypatch.setenv("CPL_VSIL_CURL_NON_CACHED", f"/vsicurl/{use_catalog.base_url}")
    window = roi_window(REGION, PRODUCT.extent)
    assert len(ChunkGrid(PRODUCT).chunks(window)) == 9
    use_catalog.reset_log()
    load_arcticdem(REGION, tmp_path, 2)
    for asset in ("dem", "datamask"):
        path = use_catalog.asset_path(ITEM, asset)
        data_start, blocks = block_table(path)
        name = path.name
        ranges = sorted((int(m[1]), int(m[2]) + 1) for e in use_catalog.requests("files")
                        if e["path"].endswith(name) and e.get("range") and (m := RANGE.search(e["range"])))
        # the file's header (read again by each open) ends where its first block starts; each download thread opens
        # a file once and keeps it for its next chunks, so the 9 chunks open it at most once per thread
        opens = sum(1 for a, _ in ranges if a == 0)
        assert 1 <= opens <= get_settings().download_workers < 9, f"{name}: opened {opens} times"
        block_reads = [(a, b) for a, b in ranges if a >= data_start]
        # GDAL asks for whole 16 KiB pieces: two reads may share the piece where one block ends and the next begins
        for (_, end), (start, _) in itertools.pairwise(block_reads):
            assert start >= end - GDAL_PIECE, f"{name}: bytes {start}–{end} were fetched twice"
        needed = {key: span for key, span in blocks.items() if key[0] in range(0, 6) and key[1] in range(42, 49)}
        assert len(needed) >= 4, "the region's chunks lie over blocks holding data"
        for offset, size in needed.values():
            assert covered_bytes(ranges, offset, offset + size) == size, f"{name}: a block was not read whole"
        fetched = sum(b - a for a, b in block_reads)
        need = sum(size for _, size in needed.values())
        slack = GDAL_PIECE * len(block_reads)  # each read rounded out to whole pieces
        assert fetched <= 1.1 * need + slack, f"{name}: {fetched:,} bytes fetched for {need:,} bytes of blocks"
    with rasterio.open(use_catalog.asset_path(ITEM, "dem")) as src:
        assert src.block_shapes[0] == (512, 512)
    dem = load_arcticdem(REGION, tmp_path, 2).dem.values
    assert np.isfinite(dem).any() and np.isnan(dem).any()  # over data and over the tile's empty part
