"""Earth Engine set-up: request splitting to the limits, credentials from settings, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from darts_aux.errors import ConfigurationError
from darts_aux.settings import Settings
from darts_aux.sources.gee import EE_SCOPES, MAX_REQUEST_BYTES, _credentials, row_bands


@pytest.mark.parametrize(("shape", "bands", "requests"), [((5000, 5000), 4, 4), ((5000, 5000), 3, 3),
                                                          ((3600, 3600), 3, 2), ((834, 5000), 4, 1)])
def test_row_bands_are_few_and_within_the_limit(shape: tuple[int, int], bands: int, requests: int) -> None:
    parts = row_bands(shape, bands)
    assert len(parts) == requests
    assert parts[0][0] == 0 and parts[-1][1] == shape[0]
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all((stop - start) * shape[1] * bands * 2 <= MAX_REQUEST_BYTES for start, stop in parts)


def test_anonymous_credentials_for_a_local_earth_engine() -> None:
    from google.auth.credentials import AnonymousCredentials

    assert isinstance(_credentials(Settings(ee_credentials="anonymous")), AnonymousCredentials)


def test_service_account_key_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem.decode(),
        "client_email": "runner@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }))
    credentials = _credentials(Settings(ee_credentials=str(key_file)))
    assert isinstance(credentials, service_account.Credentials)
    assert credentials.service_account_email == "runner@p.iam.gserviceaccount.com"
    assert set(credentials.scopes) == set(EE_SCOPES)


def test_unreadable_key_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="DARTS_AUX_EE_CREDENTIALS"):
        _credentials(Settings(ee_credentials=str(tmp_path / "missing.json")))
