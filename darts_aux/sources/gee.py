"""Earth Engine access: one lazy initialisation per process, computePixels for exact grids, split to fit limits."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigurationError, SourceDataError, SourceRequestError
from ..retry import RetryPolicy, http_status, is_transient
from ..settings import Settings

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 50_331_648
"""Earth Engine's limit on one request's uncompressed size (48 MiB), counting one mask byte per pixel and band."""
MAX_GRID_SIDE = 32_768
EE_SCOPES = ("https://www.googleapis.com/auth/earthengine", "https://www.googleapis.com/auth/cloud-platform")

_init_lock = threading.Lock()
_initialised_with: tuple[str, str, str | None] | None = None
_in_flight: threading.BoundedSemaphore | None = None
_in_flight_size = 0


@dataclass(frozen=True)
class PixelGrid:
    """An exact request grid: shape and the affine of its top-left corner, in a CRS."""

    crs: str
    x0: float
    y0: float
    resolution: float
    shape: tuple[int, int]

    def as_request(self) -> dict[str, Any]:
        """The `grid` field of a computePixels request."""
        rows, cols = self.shape
        return {
            "dimensions": {"width": cols, "height": rows},
            "affineTransform": {"scaleX": self.resolution, "shearX": 0, "translateX": self.x0,
                                "shearY": 0, "scaleY": -self.resolution, "translateY": self.y0},
            "crsCode": self.crs,
        }

    def rows(self, row0: int, row1: int) -> PixelGrid:
        """The band of rows [row0, row1) of this grid."""
        return PixelGrid(self.crs, self.x0, self.y0 - row0 * self.resolution, self.resolution,
                         (row1 - row0, self.shape[1]))


def row_bands(shape: tuple[int, int], bands: int, bytes_per_value: int = 1) -> list[tuple[int, int]]:
    """As few horizontal bands of rows as fit Earth Engine's request limits, of near-equal height."""
    rows, cols = shape
    if cols > MAX_GRID_SIDE:
        raise ValueError(f"a grid {cols} px wide cannot be requested (limit {MAX_GRID_SIDE}); use narrower chunks")
    per_row = cols * bands * (bytes_per_value + 1)
    max_rows = min(MAX_GRID_SIDE, MAX_REQUEST_BYTES // per_row)
    count = math.ceil(rows / max_rows)
    height = math.ceil(rows / count)
    return [(start, min(start + height, rows)) for start in range(0, rows, height)]


def initialise(settings: Settings) -> None:
    """Initialise the Earth Engine client once per process (and again only if its settings change)."""
    global _initialised_with, _in_flight, _in_flight_size
    key = (settings.ee_url, settings.ee_project or "", settings.ee_credentials)
    with _init_lock:
        if _in_flight is None or _in_flight_size != settings.ee_max_in_flight:
            _in_flight = threading.BoundedSemaphore(settings.ee_max_in_flight)
            _in_flight_size = settings.ee_max_in_flight
        import ee

        if _initialised_with == key and ee.data.is_initialized():
            return
        if not settings.ee_project:
            raise ConfigurationError(
                "Earth Engine needs a Google Cloud project: set DARTS_AUX_EE_PROJECT (a project registered "
                "for Earth Engine)."
            )
        credentials = _credentials(settings)
        if _initialised_with is not None:
            ee.Reset()  # the client caches the previous server's algorithms per process
        try:
            ee.Initialize(credentials=credentials, project=settings.ee_project, url=settings.ee_url)
        except ee.EEException as error:
            raise ConfigurationError(
                f"Earth Engine at {settings.ee_url} refused to initialise for project {settings.ee_project!r}: "
                f"{error}; check DARTS_AUX_EE_PROJECT, DARTS_AUX_EE_CREDENTIALS and DARTS_AUX_EE_URL."
            ) from error
        ee.data.setMaxRetries(0)  # retries are ours: transient errors only, backoff with jitter
        _initialised_with = key
        log.info("Earth Engine initialised at %s for project %s", settings.ee_url, settings.ee_project)


def _credentials(settings: Settings) -> Any:
    """Credentials from a service-account key file, 'anonymous', or the user's default credentials."""
    source = settings.ee_credentials
    if source == "anonymous":
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    if source:
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(source, scopes=list(EE_SCOPES))
        except (OSError, ValueError) as error:
            raise ConfigurationError(
                f"DARTS_AUX_EE_CREDENTIALS={source!r} is not a readable service-account key file ({error})."
            ) from error
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default(scopes=list(EE_SCOPES))
    except DefaultCredentialsError as error:
        raise ConfigurationError(
            "no Earth Engine credentials: set DARTS_AUX_EE_CREDENTIALS to a service-account key file, or run "
            "`earthengine authenticate` / `gcloud auth application-default login`."
        ) from error
    return credentials


def compute_pixels(expression: Any, grid: PixelGrid, band_ids: Sequence[str], policy: RetryPolicy) -> np.ndarray:
    """One computePixels request (retried on transient errors, at most the configured number in flight)."""
    import ee

    request = {"expression": expression, "fileFormat": "NUMPY_NDARRAY", "grid": grid.as_request(),
               "bandIds": list(band_ids)}

    def once() -> np.ndarray:
        assert _in_flight is not None, "initialise() first"
        with _in_flight:
            return ee.data.computePixels(request)

    try:
        result = policy.call(once, what=f"computePixels {grid.shape[1]}×{grid.shape[0]}")
    except ee.EEException as error:
        raise _typed(error) from error
    return _checked(result, grid.shape, band_ids)


def _typed(error: Exception) -> Exception:
    """An Earth Engine failure as a darts-aux error: rejected requests are not retried, others exhausted retries."""
    from ..errors import SourceUnavailableError

    status = http_status(error)
    if status is not None and not is_transient(error):
        return SourceRequestError(f"Earth Engine rejected the request (HTTP {status}): {error}", source="earthengine")
    return SourceUnavailableError(
        f"Earth Engine kept failing (HTTP {status or '—'}): {error}; try again later.", source="earthengine"
    )


def _checked(result: Any, shape: tuple[int, int], band_ids: Sequence[str]) -> np.ndarray:
    """The answer must be a structured uint8 array of the requested shape with every band."""
    names = getattr(getattr(result, "dtype", None), "names", None) or ()
    if not isinstance(result, np.ndarray) or tuple(result.shape) != tuple(shape) or set(band_ids) - set(names):
        raise SourceDataError(
            f"Earth Engine answered {type(result).__name__} of shape {getattr(result, 'shape', None)} with bands "
            f"{names}, expected {shape} with {list(band_ids)}",
            source="earthengine",
        )
    for band in band_ids:
        if result.dtype[band] != np.uint8:
            raise SourceDataError(f"Earth Engine band {band} is {result.dtype[band]}, expected uint8",
                                  source="earthengine")
    return result
