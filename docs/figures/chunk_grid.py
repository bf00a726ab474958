"""Draw how the cubes' fill chunks sit on PGC's tile grid (docs/img/chunk-grid.png).

Run `uv run python docs/figures/chunk_grid.py` after a change to the products or the chunk grid; the chunk
footprints come from darts_aux.grid itself, so the picture shows what the code does.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from darts_aux.grid import ChunkGrid, bounds_window
from darts_aux.products import arcticdem

OUT = Path(__file__).resolve().parents[1] / "img" / "chunk-grid.png"
PANELS = (
    # resolution, tile edge (m), view, a region from round coordinates, note on the region's right edge
    (32, 100_000.0, (-40_000.0, -60_000.0, 130_000.0, 110_000.0), (0.0, 0.0, 64_000.0, 64_000.0),
     "the box ends 96 m past the chunk edge\nat x = 63,904 m: a third column of chunks"),
    (2, 50_000.0, (-2_000.0, -4_000.0, 11_000.0, 9_000.0), (0.0, 0.0, 4_000.0, 4_000.0),
     "a 4 km box from (0, 0) crosses the chunk\nedges at x = 1,900 m and 3,900 m"),
)


def panel(ax: Axes, resolution: int, tile: float, view: tuple[float, ...], box: tuple[float, ...], note: str) -> None:
    """One cube: tiles in grey, its fill chunks in blue, the chunks the box touches filled."""
    product = arcticdem(resolution)  # type: ignore[arg-type]
    grid = ChunkGrid(product)
    left, bottom, right, top = view
    for k in range(int(left // tile), int(right // tile) + 1):
        ax.axvline(k * tile, color="0.75", lw=0.8)
        ax.axhline(k * tile, color="0.75", lw=0.8)
    touched = set(grid.chunks(bounds_window(product.extent, box)))  # type: ignore[arg-type]
    for chunk in grid.chunks(bounds_window(product.extent, view)):  # type: ignore[arg-type]
        xs, ys = grid.footprint(chunk).exterior.xy
        ax.fill(xs, ys, facecolor="#9ecae1" if chunk in touched else "none", edgecolor="#08519c", lw=1.2)
    bx0, by0, bx1, by1 = box
    ax.plot([bx0, bx1, bx1, bx0, bx0], [by0, by0, by1, by1, by0], color="#d94801", lw=2)
    ax.annotate(note, xy=(bx1, (by0 + by1) / 2), xytext=(bx1 + (right - bx1) * 0.1, bottom + (top - bottom) * 0.05),
                fontsize=7, arrowprops={"arrowstyle": "->", "color": "#d94801"})
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    side = (box[2] - box[0]) / 1000
    ax.set_title(f"{resolution} m: chunks of {grid.chunk * resolution / 1000:.0f} km; a {side:.0f} km box "
                 f"touches {len(touched)}", fontsize=9)
    ax.set_xlabel("x (EPSG:3413, m)")
    ax.set_ylabel("y (EPSG:3413, m)")


def main() -> None:
    """Both panels side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), dpi=100)
    for ax, spec in zip(axes, PANELS, strict=True):
        panel(ax, *spec)
    fig.suptitle("Fill chunks (blue; touched: filled) on PGC's tiles (grey: 100 km tiles at 32 m, 50 km subtiles "
                 "at 2 m);\nchunk edges follow the tiles' buffered corner, not round coordinates", fontsize=10)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
