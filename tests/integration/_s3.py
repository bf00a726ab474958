"""A real S3-compatible server on loopback (moto in server mode) for the object-storage tests.

Import the fixtures into a test module (`from ._s3 import s3_server, s3_data_dir`). The endpoint and
credentials reach darts-aux only through the standard AWS variables, as in production.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKET = "darts-aux-cubes"
ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running moto server: its endpoint and the AWS variables that point a process at it."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """AWS_* for a process (or Dask worker) that should use this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        """A boto3 client of the server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def keys(self, prefix: str) -> list[str]:
        """Every object key under a prefix."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 for the session, with one bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    running = S3Server(f"http://127.0.0.1:{port}")
    running.client().create_bucket(Bucket=BUCKET)
    saved = {key: os.environ.get(key) for key in running.env}
    os.environ.update(running.env)  # spawned workers (Dask, concurrency tests) inherit the endpoint
    try:
        yield running
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def s3_data_dir(s3_server: S3Server) -> str:
    """A fresh `s3://bucket/prefix` data directory on the server."""
    return f"s3://{BUCKET}/runs/{uuid.uuid4().hex[:12]}"


def load_region_in_worker(settings: dict[str, str], data_dir: str, bounds: tuple[float, float, float, float],
                          resolution: int, start_at: float) -> int:
    """In a spawned process: `load_arcticdem` of a bbox into an s3:// data_dir from `start_at` on; valid pixels."""
    import time

    from odc.geo.geobox import GeoBox

    from darts_aux import load_arcticdem
    from darts_aux.settings import reload_settings

    for key, value in settings.items():
        os.environ[f"DARTS_AUX_{key.upper()}"] = value
    reload_settings()
    time.sleep(max(0.0, start_at - time.time()))
    data = load_arcticdem(GeoBox.from_bbox(bounds, "EPSG:3413", resolution=resolution), data_dir, resolution)
    return int(data["datamask"].values.sum())
