"""The exception hierarchy: one root (DartsAuxError), a few kinds a caller can act on."""

from __future__ import annotations


class DartsAuxError(Exception):
    """Root of every error darts-aux raises on purpose; catch this to catch them all."""


class InvalidRequestError(DartsAuxError, ValueError):
    """The caller asked for something that cannot be served; the message says what to change."""


class InvalidResolutionError(InvalidRequestError):
    """A product resolution that does not exist."""


class UnknownEditionError(InvalidRequestError):
    """A TCVIS edition that does not exist."""


class UnknownTimeStepError(InvalidRequestError):
    """A time step (e.g. a year) the product does not have, or steps asked of a product without a time axis."""


class InvalidBufferError(InvalidRequestError):
    """A buffer that is negative, not an integer, or absurdly large."""


class InvalidRegionError(InvalidRequestError):
    """A region that cannot be used: not a GeoBox, no CRS, a CRS that cannot be taken to the cube's, bad latitudes."""


class EmptyRegionError(InvalidRegionError):
    """A geobox with no pixels, zero area or non-finite coordinates."""


class OutsideExtentError(InvalidRegionError):
    """A region that does not touch the product's extent at all."""


class DataDirError(InvalidRequestError):
    """A data directory that is not a path, not writable, or holds something else."""


class ConfigurationError(DartsAuxError):
    """A setting is missing or invalid; the message names the DARTS_AUX_* variable."""


class MissingExtraError(DartsAuxError, ImportError):
    """An optional dependency is not installed; the message names the darts-aux extra that installs it.

    `extra` is that extra's name (e.g. "viz" for `pip install 'darts-aux[viz]'`).
    """

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class SourceError(DartsAuxError):
    """A remote source (STAC API, COG server, Earth Engine) failed; `source` names it."""

    def __init__(self, message: str, *, source: str) -> None:
        super().__init__(message)
        self.source = source


class TransientSourceError(SourceError):
    """A source failure worth retrying: timeout, 429, 5xx, reset or truncated transfer."""


class SourceUnavailableError(SourceError):
    """A source stayed unreachable or failing after all retries."""


class SourceRequestError(SourceError):
    """A source rejected a request as invalid (HTTP 4xx other than 429); retrying cannot help."""


class SourceDataError(SourceError):
    """A source answered, but with data this project cannot use (bad item, wrong grid, not a COG)."""


class StoreError(DartsAuxError):
    """The cube store could not be created, read or committed to."""


class DiskFullError(StoreError):
    """The data directory's disk (or a file-size limit) ran out while writing; nothing was committed."""


class ManifestError(DartsAuxError):
    """The chunk manifest could not be read or written."""


class OrchestratorUnavailableError(ConfigurationError):
    """The configured Prefect API does not answer, so no fill can run through it; the message says what to do."""


class OfflineError(DartsAuxError):
    """An offline load needs chunks that were never fetched; the message names the command that prefetches them.

    `missing` is how many chunks of the region the cube does not hold yet.
    """

    def __init__(self, message: str, *, missing: int) -> None:
        super().__init__(message)
        self.missing = missing
