"""Configuration from the environment (prefix DARTS_AUX_) with production defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PGC_STAC_URL = "https://stac.pgc.umn.edu/api/v1/"
EE_HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
PGC_TILE_INDEX_URL = (
    "https://data.pgc.umn.edu/elev/dem/setsm/ArcticDEM/indexes/ArcticDEM_Mosaic_Index_latest_gpqt.zip"
)


class Settings(BaseSettings):
    """Every knob of darts-aux; each field is read from DARTS_AUX_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix="DARTS_AUX_", frozen=True, extra="ignore")

    data_dir: Path | str = Field(
        default_factory=lambda: Path.home() / ".cache" / "darts-aux",
        description="Where cubes and manifests live: a folder, or s3://bucket/prefix on object storage; the "
        "default for load_*'s data_dir.",
    )
    stac_url: str = Field(PGC_STAC_URL, description="STAC API root serving PGC-shaped ArcticDEM items.")
    discovery: Literal["stac", "tile-index"] = Field(
        "stac", description="Find tiles by STAC item search, or by PGC's GeoParquet tile index."
    )
    tile_index_url: str = Field(PGC_TILE_INDEX_URL, description="PGC mosaic tile index (zip of GeoParquet).")
    revisit_days: float = Field(7.0, ge=0, description="A partial chunk checked this recently counts as settled.")
    download_workers: int = Field(4, ge=1, le=64, description="Chunks downloaded at once.")
    orchestrator: Literal["auto", "prefect", "inline"] = Field(
        "auto",
        description="'prefect' runs the fill flow, 'inline' runs the same tasks in-process; "
        "'auto' uses Prefect when a Prefect API is configured (PREFECT_API_URL), else inline.",
    )
    retries: int = Field(
        3, ge=0, le=20,
        description="Retries of a request that fails transiently (timeout, 429, 5xx, reset, cut-short body); one "
        "layer retries each request, so a source that stays down sees retries + 1 requests and fails within "
        "(retries + 1) × http_timeout_seconds plus (2**retries − 1) × retry_delay_seconds × (1 + retry_jitter) "
        "(defaults: 4 requests, at most 130.5 s; a refused connection: 10.5 s).",
    )
    retry_delay_seconds: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry.")
    retry_jitter: float = Field(0.5, ge=0, le=1, description="Random spread of each retry delay, as a fraction.")
    http_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one HTTP request to a source.")
    tcvis_edition: str = Field(
        "users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS", description="TCVIS edition (Earth Engine ImageCollection id)."
    )
    ee_project: str | None = Field(None, description="Google Cloud project for Earth Engine requests.")
    ee_url: str = Field(EE_HIGH_VOLUME_URL, description="Earth Engine API root (the high-volume endpoint).")
    ee_credentials: str | None = Field(
        None,
        description="Service-account key file for Earth Engine; unset: the user's default credentials; "
        "'anonymous': no credentials (only for a local Earth Engine).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint for s3:// data dirs; unset: AWS_ENDPOINT_URL, else AWS itself."
    )
    s3_region: str | None = Field(None, description="Region of the bucket; unset: AWS_REGION, else us-east-1.")
    s3_access_key_id: str | None = Field(None, description="Access key; unset: AWS_ACCESS_KEY_ID or the SDK's chain.")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret key; unset: AWS_SECRET_ACCESS_KEY.")
    task_runner: Literal["threads", "dask", "ray"] = Field(
        "threads",
        description="Task runner of the Prefect fill flows: a thread pool in the flow's process, Dask (a local "
        "cluster, or the scheduler at DARTS_AUX_DASK_ADDRESS) or Ray (a local instance, or the cluster at "
        "DARTS_AUX_RAY_ADDRESS); Dask and Ray need a running Prefect server (PREFECT_API_URL).",
    )
    dask_address: str | None = Field(None, description="Address of an existing Dask scheduler (tcp://host:8786).")
    dask_workers: int = Field(2, ge=1, le=256, description="Worker processes of a local Dask cluster; with "
                              "DARTS_AUX_DASK_ADDRESS, how many download tasks a fill keeps running on the cluster.")
    ray_address: str | None = Field(None, description="Address of an existing Ray cluster: 'ray://head:10001' "
                                    "(Ray Client), or 'auto' for the cluster this machine was started into.")
    ray_workers: int = Field(2, ge=1, le=256, description="CPUs of a local Ray instance (one task each); with "
                             "DARTS_AUX_RAY_ADDRESS, how many download tasks a fill keeps running on the cluster.")
    chunks_per_task: int = Field(0, ge=0, le=256, description="Chunks one download/commit task of a Prefect fill "
                                 "takes; 0: automatic (1 for small fills, up to 16 for large ones).")
    claim_lease_seconds: float = Field(
        60.0, ge=2, description="A chunk claim not refreshed for this long belongs to a fill that died and is taken "
        "over (claims are refreshed every quarter of it).")
    claim_wait_seconds: float = Field(
        3600.0, ge=0, description="How long a fill waits for a chunk another fill is downloading before downloading "
        "it too; 0: never wait (claims are still taken).")
    ee_max_in_flight: int = Field(8, ge=1, le=40, description="Earth Engine requests in flight at once per process.")
    offline: bool = Field(False, description="Never download: loads read what the cube holds and fail at once on "
                          "chunks never fetched (for compute nodes without internet; as load_*(..., offline=True)).")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir(cls, value: object) -> object:
        """An s3:// URL stays a string (Path would fold its '//'); anything else is a Path."""
        if isinstance(value, str) and value.strip().lower().startswith("s3://"):
            return value.strip()
        return Path(value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def _env_settings() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The settings from the environment, read once per process."""
    return _env_settings()


def reload_settings() -> Settings:
    """Re-read the environment (after changing DARTS_AUX_* variables in-process)."""
    _env_settings.cache_clear()
    return _env_settings()
