"""Earth Engine access: one lazy initialisation per process, computePixels for exact grids, split to fit limits."""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigurationError, SourceDataError, SourceRequestError, SourceUnavailableError
from ..npy_header import NPY_HEADER_LOCK
from ..retry import RetryPolicy, http_status, is_transient
from ..settings import Settings

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 50_331_648
"""Earth Engine's limit on one request's uncompressed size (48 MiB), counting one mask byte per pixel and band."""
MAX_GRID_SIDE = 32_768
EE_DATA_HINT = ("check that DARTS_AUX_EE_URL is an Earth Engine endpoint and that the product's collection (for TCVIS: "
                "DARTS_AUX_TCVIS_EDITION) holds the bands it declares")
EE_SCOPES = ("https://www.googleapis.com/auth/earthengine", "https://www.googleapis.com/auth/cloud-platform")

_init_lock = threading.Lock()
_initialised_with: tuple[str, str, str | None, float] | None = None
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
    return row_bands_for(shape, [bytes_per_value] * bands)


def request_pixel_bytes(value_bytes: Sequence[int]) -> int:
    """Bytes one pixel of a request counts against the limit: each band's value plus its mask byte."""
    return sum(size + 1 for size in value_bytes)


def row_bands_for(shape: tuple[int, int], value_bytes: Sequence[int]) -> list[tuple[int, int]]:
    """Row bands of a grid whose bands' values take `value_bytes` each (4 for float32): as few as fit the limits.

    64 float32 bands count 320 bytes per pixel, so one request holds at most 157,286 pixels: a 1000 × 1000 chunk
    takes 7 requests of 143 rows.
    """
    rows, cols = shape
    if cols > MAX_GRID_SIDE:
        raise ValueError(f"a grid {cols} px wide cannot be requested (limit {MAX_GRID_SIDE}); use narrower chunks")
    per_row = cols * request_pixel_bytes(value_bytes)
    if per_row > MAX_REQUEST_BYTES:
        raise ValueError(f"one row of {cols} px over {len(value_bytes)} bands exceeds Earth Engine's request limit; "
                         f"use narrower chunks")
    max_rows = min(MAX_GRID_SIDE, MAX_REQUEST_BYTES // per_row)
    count = math.ceil(rows / max_rows)
    height = math.ceil(rows / count)
    return [(start, min(start + height, rows)) for start in range(0, rows, height)]


def initialise(settings: Settings) -> None:
    """Initialise the Earth Engine client once per process (and again only if its settings change).

    Initialisation fetches the discovery document and the algorithm list, so it is retried like any request;
    a failure that outlives the retries is SourceUnavailableError, a refusal ConfigurationError.
    """
    global _initialised_with, _in_flight, _in_flight_size
    key = (settings.ee_url, settings.ee_project or "", settings.ee_credentials, settings.http_timeout_seconds)
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
        policy = RetryPolicy(settings.retries, settings.retry_delay_seconds, settings.retry_jitter)
        try:
            policy.call(lambda: _connect(settings, credentials),
                        what=f"Earth Engine initialisation at {settings.ee_url}")
        except Exception as error:
            _initialised_with = None
            raise _initialise_error(settings, error) from error
        _initialised_with = key
        log.info("Earth Engine initialised at %s for project %s", settings.ee_url, settings.ee_project)


def _connect(settings: Settings, credentials: Any) -> None:
    """One attempt at `ee.Initialize`, from a clean client, with our deadline and without the client's retries."""
    import ee
    from ee import _state

    ee.Reset()  # the client caches the previous server's algorithms per process
    # The public setters rebuild the API resource (another discovery fetch), so set the fields before Initialize:
    # retries are ours (transient errors only, backoff with jitter), and every request, discovery included,
    # gets the source timeout.
    state = _state.get_state()
    state.max_retries = 0
    state.deadline_ms = int(settings.http_timeout_seconds * 1000)
    ee.Initialize(credentials=credentials, project=settings.ee_project, url=settings.ee_url)


def _initialise_error(settings: Settings, error: Exception) -> Exception:
    """A failed initialisation as a typed error: unreachable (transient) or refused (configuration)."""
    if is_transient(error):
        return SourceUnavailableError(
            f"Earth Engine at {settings.ee_url} could not be reached to initialise ({type(error).__name__}: {error}); "
            f"try again later, or check DARTS_AUX_EE_URL.", source="earthengine")
    return ConfigurationError(
        f"Earth Engine at {settings.ee_url} refused to initialise for project {settings.ee_project!r}: "
        f"{error}; check DARTS_AUX_EE_PROJECT, DARTS_AUX_EE_CREDENTIALS and DARTS_AUX_EE_URL."
    )


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


def compute_pixels(expression: Any, grid: PixelGrid, band_ids: Sequence[str], policy: RetryPolicy,
                   dtypes: Mapping[str, np.dtype[Any]] | None = None) -> np.ndarray:
    """One computePixels request (retried on transient errors, at most the configured number in flight).

    The answer is asked for as an .npy file and read as a view of its bytes: the client's NUMPY_NDARRAY
    conversion (np.load) copies a structured array element by element, half the client's CPU per request.
    """
    import ee

    request = {"expression": expression, "fileFormat": "NPY", "grid": grid.as_request(), "bandIds": list(band_ids)}

    def once() -> Any:
        assert _in_flight is not None, "initialise() first"
        with _in_flight:
            return ee.data.computePixels(request)

    try:
        answer = policy.call(once, what=f"computePixels {grid.shape[1]}×{grid.shape[0]}")
        result = npy_array(answer)
    except Exception as error:
        typed = _typed(error)
        if typed is None:
            raise
        raise typed from error
    return _checked(result, grid.shape, band_ids, dtypes)


def npy_array(data: Any) -> np.ndarray:
    """The array of an .npy file's bytes, as a read-only view of them; ValueError when they are not one."""
    from numpy.lib import format as npy

    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"expected the bytes of an .npy file, got {type(data).__name__}")
    stream = io.BytesIO(data)
    version = npy.read_magic(stream)
    read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f".npy format version {version} is not read here")
    with NPY_HEADER_LOCK:
        shape, fortran_order, dtype = read_header(stream)
    if dtype.hasobject:
        raise ValueError(".npy file holds Python objects")
    count = math.prod(shape)
    values = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())  # ValueError when cut short
    return values.reshape(shape, order="F" if fortran_order else "C")


def _typed(error: Exception) -> Exception | None:
    """An Earth Engine failure as a darts-aux error: rejected (4xx), still failing after retries, or bad data."""
    import ee

    status = http_status(error)
    if status is not None and not is_transient(error):
        return SourceRequestError(f"Earth Engine rejected the request (HTTP {status}): {error}", source="earthengine")
    if is_transient(error) or isinstance(error, ee.EEException):
        what = f"HTTP {status}" if status is not None else type(error).__name__
        return SourceUnavailableError(f"Earth Engine kept failing ({what}): {error}; try again later.",
                                      source="earthengine")
    if isinstance(error, (ValueError, EOFError)):
        return SourceDataError(f"Earth Engine's answer is not a readable .npy array ({error}); {EE_DATA_HINT}.",
                               source="earthengine")
    return None


def _checked(result: Any, shape: tuple[int, int], band_ids: Sequence[str],
             dtypes: Mapping[str, np.dtype[Any]] | None = None) -> np.ndarray:
    """The answer must be a structured array of the requested shape with every band, each of its expected type.

    `dtypes` maps band → expected type (uint8 for every band when None, as TCVIS). A float64 answer for a float32
    band is accepted when every value survives the conversion unchanged, since the cube then stores the source exactly.
    """
    names = getattr(getattr(result, "dtype", None), "names", None) or ()
    if not isinstance(result, np.ndarray) or tuple(result.shape) != tuple(shape) or set(band_ids) - set(names):
        raise SourceDataError(
            f"Earth Engine answered {type(result).__name__} of shape {getattr(result, 'shape', None)} with bands "
            f"{list(names)} to a request for {shape} pixels of {list(band_ids)}; {EE_DATA_HINT}.",
            source="earthengine",
        )
    expected = {band: np.dtype((dtypes or {}).get(band, np.uint8)) for band in band_ids}
    wrong = {band: str(result.dtype[band]) for band in band_ids
             if result.dtype[band] != expected[band] and not _exact_narrowing(result[band], expected[band])}
    if wrong:
        wanted = {band: str(expected[band]) for band in wrong}
        raise SourceDataError(f"Earth Engine answered bands of type {wrong} where the product declares {wanted}; "
                              f"{EE_DATA_HINT}.", source="earthengine")
    return result


def _exact_narrowing(values: np.ndarray, dtype: np.dtype[Any]) -> bool:
    """True when float values convert to the (narrower) float type without changing any value (NaN stays NaN)."""
    if values.dtype.kind != "f" or dtype.kind != "f":
        return False
    narrowed = values.astype(dtype)
    return bool(np.array_equal(narrowed.astype(values.dtype), values, equal_nan=True))
