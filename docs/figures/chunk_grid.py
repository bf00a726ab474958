"""Draw how the cube's fill chunks sit on PGC's 100 km tile grid (docs/img/chunk-grid.png).

Run `uv run python docs/figures/chunk_grid.py` after a change to the products or the chunk grid; the chunk
footprints come from darts_aux.grid itself, so the picture shows what the code does.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from darts_aux.grid import ChunkGrid, bounds_window
from darts_aux.products import arcticdem

OUT = Path(__file__).resolve().parents[1] / "img" / "chunk-grid.png"
BOX = (0.0, 0.0, 320_000.0, 320_000.0)
"""A 320 × 320 km region from round coordinates, at 32 m."""
VIEW = (-200_000.0, -200_000.0, 520_000.0, 520_000.0)
TILE = 100_000.0


def main() -> None:
    """Tiles in grey, the 32 m cube's 160 km fill chunks in blue, the chunks the box touches filled."""
    product = arcticdem(32)
    grid = ChunkGrid(product)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    left, bottom, right, top = VIEW
    for k in range(int(left // TILE), int(right // TILE) + 1):
        ax.axvline(k * TILE, color="0.75", lw=0.8)
        ax.axhline(k * TILE, color="0.75", lw=0.8)
    touched = set(grid.chunks(bounds_window(product.extent, BOX)))
    for chunk in grid.chunks(bounds_window(product.extent, VIEW)):
        xs, ys = grid.footprint(chunk).exterior.xy
        ax.fill(xs, ys, facecolor="#9ecae1" if chunk in touched else "none", edgecolor="#08519c", lw=1.2)
    bx0, by0, bx1, by1 = BOX
    ax.plot([bx0, bx1, bx1, bx0, bx0], [by0, by0, by1, by1, by0], color="#d94801", lw=2)
    ax.annotate("the box ends 96 m past the chunk edge\nat x = 319,904 m: a third column of chunks",
                xy=(bx1, 200_000), xytext=(345_000, -150_000), fontsize=8,
                arrowprops={"arrowstyle": "->", "color": "#d94801"})
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_title(f"ArcticDEM 32 m: {len(touched)} fill chunks (blue) for a 320 km box (orange);\n"
                 "grey: PGC's 100 km tiles. Chunk edges follow the tiles' buffered corner.", fontsize=9)
    ax.set_xlabel("x (EPSG:3413, m)")
    ax.set_ylabel("y (EPSG:3413, m)")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
