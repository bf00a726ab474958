"""Secrets never leave the process: a TCVIS fill with an Earth Engine service-account key and S3 credentials, run
as a Prefect flow into an S3 cube, leaves no private key, S3 secret or bearer token in anything it produced.

Looked at: every log record (DEBUG and up, with tracebacks), the flow run's logs and artifacts on the Prefect test
server, every object the fill wrote to the bucket (manifest segments, cube metadata and chunks), the cube's commit
messages and metadata, and the error (message, repr, chain and traceback) of a fill whose Earth Engine is down.
The key's token_uri is a loopback token server, which hands out the bearer token the Earth Engine calls carry.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from darts_aux import load_tcvis
from darts_aux.errors import SourceError
from darts_aux.local.earthengine import LocalEarthEngine
from darts_aux.local.faults import FaultProxy
from darts_aux.location import as_location
from darts_aux.products import TCVIS_PIXEL, tcvis
from darts_aux.settings import reload_settings
from darts_aux.store import Cube

from ._s3 import ACCESS_KEY, BUCKET, S3Server, s3_data_dir, s3_server  # noqa: F401 - fixtures

_TCVIS = tcvis()
_LON = _TCVIS.extent.x0 + 125 * _TCVIS.fill_chunk * TCVIS_PIXEL
_LAT = _TCVIS.extent.y0 - 18 * _TCVIS.fill_chunk * TCVIS_PIXEL
ROI = GeoBox.from_bbox((_LON + 0.1, _LAT - 0.3, _LON + 0.2, _LAT - 0.2), "EPSG:4326", resolution=TCVIS_PIXEL)


class TokenServer:
    """A loopback OAuth token endpoint: every POST gets `token` as a bearer access token (counted)."""

    def __init__(self, token: str) -> None:
        self.issued = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.issued += 1
                body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bearer() -> Iterator[tuple[str, TokenServer]]:
    token = "ya29.bearer-" + uuid.uuid4().hex
    server = TokenServer(token)
    yield token, server
    server.close()


def _service_account_key(folder: Path, token_uri: str) -> tuple[Path, str]:
    """A fresh RSA service-account key file; its path and the private key's PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = folder / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "darts-aux-test", "private_key_id": uuid.uuid4().hex,
        "private_key": pem, "client_email": "filler@darts-aux-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": token_uri,
    }))
    return path, pem


def _secret_fragments(pem: str, s3_secret: str, token: str) -> dict[str, str]:
    """What must never show: lines of the private key's body, the S3 secret, the bearer token."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return {"private key (line 2)": body[1], "private key (line 10)": body[9], "private key (last line)": body[-1],
            "S3 secret": s3_secret, "bearer token": token, "bearer token (value)": token.split("-", 1)[1]}


class EveryRecord:
    """Every record any logger handles at DEBUG and up, whatever handlers Prefect's logging setup installs or drops.

    Prefect (re)configures the root logger's handlers when a flow first runs in a process, so a handler attached
    beforehand would miss records: `Logger.handle` itself is wrapped instead.
    """

    LOGGERS = ("darts_aux", "flows", "prefect", "google", "googleapiclient", "ee", "urllib3", "requests", "httpx",
               "httpcore", "botocore", "boto3", "s3fs", "fsspec", "icechunk", "rasterio")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: list[logging.LogRecord] = []
        handle = logging.Logger.handle

        def keeping(logger: logging.Logger, record: logging.LogRecord) -> None:
            self.records.append(record)
            handle(logger, record)

        monkeypatch.setattr(logging.Logger, "handle", keeping)
        for name in self.LOGGERS:
            monkeypatch.setattr(logging.getLogger(name), "level", logging.DEBUG)

    def texts(self) -> list[str]:
        """Every record as a handler would write it, traceback included, plus its raw arguments."""
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(r) + repr(r.args) for r in self.records]


def _prefect_texts() -> list[str]:
    """The flow runs' logs and every artifact on the test server."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs()
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
    return ([log.message for log in logs] + [json.dumps(a.model_dump(mode="json")) for a in artifacts]
            + [json.dumps(r.model_dump(mode="json")) for r in runs])


def _bucket_texts(s3: S3Server, data_dir: str) -> list[str]:
    """Every object the fill wrote under the data dir, as text (bytes decoded leniently)."""
    prefix = data_dir.removeprefix(f"s3://{BUCKET}/")
    client = s3.client()
    keys = s3.keys(prefix)
    assert keys, "the fill wrote to the bucket"
    return [key + client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("latin-1") for key in keys]


def _commit_texts(data_dir: str) -> list[str]:
    """The cube's commit messages and metadata."""
    history = list(Cube.open(as_location(data_dir), _TCVIS).history())
    assert len(history) > 1, "the fill committed"
    return [f"{s.message} {json.dumps(s.metadata, default=str)}" for s in history]


def _error_texts(error: BaseException) -> list[str]:
    """The error's message, repr and whole chain's traceback."""
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def test_no_secret_leaves_the_process(
    earth_engine: LocalEarthEngine, s3_server: S3Server, s3_data_dir: str,
    forget_new_flow_runs: None, bearer: tuple[str, TokenServer], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    token, tokens = bearer
    key_file, pem = _service_account_key(tmp_path, tokens.url)
    s3_secret = "s3-secret-" + uuid.uuid4().hex
    for name, value in {"EE_URL": earth_engine.url, "EE_PROJECT": earth_engine.project,
                        "EE_CREDENTIALS": str(key_file), "S3_ACCESS_KEY_ID": ACCESS_KEY,
                        "S3_SECRET_ACCESS_KEY": s3_secret, "RETRIES": "1"}.items():
        monkeypatch.setenv(f"DARTS_AUX_{name}", value)
    reload_settings()
    earth_engine.clear_faults()

    logs = EveryRecord(monkeypatch)
    ds = load_tcvis(ROI, s3_data_dir)
    assert int(ds["valid"].values.sum()) > 0
    with FaultProxy(earth_engine.url) as proxy:  # the failing variant: Earth Engine down
        down_url = proxy.url
        monkeypatch.setenv("DARTS_AUX_EE_URL", down_url)
        reload_settings()
        proxy.down()
        with pytest.raises(SourceError) as raised:
            load_tcvis(GeoBox.from_bbox((_LON + 3.1, _LAT - 0.3, _LON + 3.2, _LAT - 0.2), "EPSG:4326",
                                        resolution=TCVIS_PIXEL), s3_data_dir)
    assert tokens.issued >= 1, "the fill signed in with the service-account key"

    places = {"logs": logs.texts(), "prefect": _prefect_texts(), "bucket": _bucket_texts(s3_server, s3_data_dir),
              "commits": _commit_texts(s3_data_dir), "error": _error_texts(raised.value)}
    # each place holds what the fill put there, so a secret written alongside would be found
    present = {"logs": down_url, "prefect": "r0018c0125", "bucket": "r0018c0125", "commits": _TCVIS.key,
               "error": "Earth Engine"}
    for where, expected in present.items():
        assert any(expected in text for text in places[where]), f"{expected!r} not found in {where}"
    assert any(r.levelno == logging.DEBUG for r in logs.records), "DEBUG records are captured"
    # the summary artifact of a fill into object storage carries its coverage map too
    assert any("data:image/png;base64," in text for text in places["prefect"])
    assert not any("Coverage map unavailable" in text for text in places["prefect"])
    leaks = [f"{what} in {where}" for where, texts in places.items()
             for what, secret in _secret_fragments(pem, s3_secret, token).items()
             if any(secret in text for text in texts)]
    assert not leaks, leaks
