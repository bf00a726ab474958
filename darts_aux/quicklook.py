"""PNG quicklooks: a hillshade of a DEM and a coverage map of a manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .location import DataLocation, S3Location


def hillshade(dem: np.ndarray, resolution: float, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Shaded relief in 0…1 (NaN where the DEM has no data)."""
    dy, dx = np.gradient(dem.astype("float64"), resolution)
    slope = np.pi / 2 - np.arctan(np.hypot(dx, dy))
    aspect = np.arctan2(-dx, dy)
    az, alt = np.radians(azimuth), np.radians(altitude)
    shaded = np.sin(alt) * np.sin(slope) + np.cos(alt) * np.cos(slope) * np.cos(az - aspect)
    return np.clip(shaded, 0, 1)


def write_hillshade_png(dem: np.ndarray, resolution: float, path: Path, title: str) -> Path:
    """Save a hillshade of `dem` (no-data pixels in light blue) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shaded = np.ma.masked_invalid(hillshade(dem, resolution))
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("#cfe3f2")
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    ax.imshow(shaded, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


LABELLED_CHUNKS = 64
"""Coverage maps of up to this many chunks label each chunk with its id and coverage."""


def read_geoparquet(path: DataLocation) -> Any:
    """A manifest file (local or on object storage) as a GeoDataFrame, read as any GeoParquet reader would."""
    import geopandas as gpd

    if isinstance(path, S3Location):
        return gpd.read_parquet(path.path, filesystem=path.fs)
    return gpd.read_parquet(path)


def write_coverage_png(manifest_files: Sequence[DataLocation], path: Path, title: str) -> Path:
    """Save the manifest's chunks as a map coloured by status (full / partial).

    The files are read as plain GeoParquet (geopandas), as QGIS would read them.
    """
    import pandas as pd

    frame = pd.concat([read_geoparquet(p) for p in manifest_files], ignore_index=True)
    frame = frame.sort_values("checked_at").drop_duplicates(["chunk_row", "chunk_col"], keep="last")
    return plot_coverage(frame, path, title)


def plot_coverage(frame: Any, path: Path, title: str) -> Path:
    """Save chunk rows (a GeoDataFrame with chunk_id, status, coverage, geometry) as a map coloured by status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"full": "#2e8b57", "partial": "#f0a030"}
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    for status, part in frame.groupby("status"):
        part.plot(ax=ax, color=colours.get(status, "grey"), edgecolor="black", linewidth=0.6, label=status)
    if len(frame) <= LABELLED_CHUNKS:  # more labels would not be legible, and each costs a text layout
        for _, row in frame.iterrows():
            centre = row.geometry.centroid
            ax.annotate(f"{row.chunk_id}\n{row.coverage:.0%}", (centre.x, centre.y), ha="center", va="center",
                        fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), loc="upper right")
    ax.set_title(title)
    crs = frame.crs
    geographic = crs is not None and crs.is_geographic
    unit = "°" if geographic else "m"
    name = crs.to_string() if crs is not None else "cube CRS"
    ax.set_xlabel(f"{'longitude' if geographic else 'x'} ({name}, {unit})")
    ax.set_ylabel(f"{'latitude' if geographic else 'y'} ({name}, {unit})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_rgb_png(dataset: Any, path: Path, title: str) -> Path:
    """Save TCVIS brightness/greenness/wetness as an RGB PNG (masked pixels grey)."""
    rgb = np.stack([dataset[v].values for v in ("tc_brightness", "tc_greenness", "tc_wetness")], axis=-1)
    rgb = rgb.astype("float32") / 255.0
    rgb[dataset["valid"].values == 0] = 0.6
    return _save_rgb(rgb, dataset, path, title, ("longitude (°)", "latitude (°)"), (8, 4.5))


def _save_rgb(rgb: np.ndarray, dataset: Any, path: Path, title: str, labels: tuple[str, str],
              size: tuple[float, float]) -> Path:
    """An RGB image in [0, 1] drawn over the dataset's extent, with a title and axis labels, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    ax.imshow(rgb, interpolation="nearest",
              extent=tuple(dataset.odc.geobox.extent.boundingbox[i] for i in (0, 2, 1, 3)))
    ax.set_title(title)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def embedding_rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Three float bands (NaN where masked) as an RGB image in [0, 1]: each stretched between its 2nd and 98th
    percentile, masked pixels grey."""
    channels = []
    for band in (red, green, blue):
        values = band[np.isfinite(band)]
        low, high = (np.percentile(values, [2, 98]) if values.size else (0.0, 1.0))
        scaled = (band.astype("float32") - low) / max(float(high - low), 1e-6)
        channels.append(np.clip(scaled, 0.0, 1.0))
    rgb = np.stack(channels, axis=-1)
    rgb[~np.isfinite(red) | ~np.isfinite(green) | ~np.isfinite(blue)] = 0.6
    return rgb


def write_embedding_png(dataset: Any, bands: Sequence[str], path: Path, title: str) -> Path:
    """Save three bands of an embedding (e.g. AlphaEarth's A01, A16, A09) as an RGB PNG, masked pixels grey."""
    rgb = embedding_rgb(*(np.asarray(dataset[band].values) for band in bands))
    return _save_rgb(rgb, dataset, path, title, ("x (m)", "y (m)"), (6, 6))
