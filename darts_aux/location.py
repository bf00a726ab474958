"""Where a data directory lives: a local folder (a Path) or a prefix on S3-compatible object storage.

`S3Location` offers the few path operations the store, manifest and staging use (`/`, `name`, `exists`,
`iterdir`, `glob`, `read_bytes`, `write_bytes`, `unlink`, `stat`), so code written for a local folder works
on a bucket too. One PUT of an object is atomic and objects are written under unique names, so no temporary
files or renames are needed there. Endpoint and credentials come from the settings (DARTS_AUX_S3_*) or the
standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import DataDirError

if TYPE_CHECKING:
    import icechunk
    import pyarrow.fs as pafs

    from .settings import Settings

S3_SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Options:
    """How to reach the object store: endpoint (None: AWS), region, and credentials (None: the SDK's chain)."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)

    @property
    def allow_http(self) -> bool:
        """Plain HTTP only for an endpoint that asks for it (a local server)."""
        return bool(self.endpoint_url and self.endpoint_url.startswith("http://"))


class ObjectStat(NamedTuple):
    """The part of os.stat_result an object has."""

    st_size: int
    st_mtime: float


@dataclass(frozen=True)
class S3Location:
    """An object or prefix `s3://bucket/key` with the path operations darts-aux needs."""

    bucket: str
    key: str = ""
    options: S3Options = field(default_factory=S3Options, compare=False)

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}".rstrip("/")

    def __truediv__(self, name: str) -> S3Location:
        key = f"{self.key}/{name}" if self.key else str(name)
        return S3Location(self.bucket, key.strip("/"), self.options)

    @property
    def name(self) -> str:
        """The last part of the key (like Path.name)."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def path(self) -> str:
        """'bucket/key' as pyarrow's S3FileSystem names it."""
        return f"{self.bucket}/{self.key}".rstrip("/")

    @property
    def fs(self) -> pafs.S3FileSystem:
        """The pyarrow filesystem of this location's store (one per set of options and process)."""
        return _filesystem(self.options)

    # -- path operations -----------------------------------------------------------------------

    def exists(self) -> bool:
        """True when an object has this key, or objects lie under it."""
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        """True when an object has exactly this key."""
        import pyarrow.fs as pafs

        return self.fs.get_file_info(self.path).type == pafs.FileType.File

    def is_dir(self) -> bool:
        """True when objects lie under this key (a prefix)."""
        return next(self.iterdir(), None) is not None

    def iterdir(self) -> Iterator[S3Location]:
        """The objects and sub-prefixes directly under this prefix."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=False)
        for info in self.fs.get_file_info(selector):
            yield S3Location(self.bucket, info.path.split("/", 1)[1], self.options)

    def glob(self, pattern: str) -> Iterator[S3Location]:
        """Entries directly under this prefix whose name matches a shell pattern."""
        return (child for child in self.iterdir() if fnmatch.fnmatchcase(child.name, pattern))

    def rglob_stats(self) -> Iterator[tuple[S3Location, ObjectStat]]:
        """Every object under this prefix with its size and time (one listing)."""
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File:
                mtime = info.mtime.timestamp() if info.mtime else 0.0
                yield S3Location(self.bucket, info.path.split("/", 1)[1], self.options), ObjectStat(info.size, mtime)

    def stat(self) -> ObjectStat:
        """Size and last-modified time of the object (FileNotFoundError when there is none)."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(str(self))
        return ObjectStat(info.size or 0, info.mtime.timestamp() if info.mtime else 0.0)

    def read_bytes(self) -> bytes:
        """The whole object (a random-access file: pyarrow's input stream reads large objects piecemeal)."""
        with self.fs.open_input_file(self.path) as handle:
            return handle.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> int:
        """Put the object (one request for small objects; readers see all of it or none)."""
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)
        return len(data)

    def write_text(self, text: str) -> int:
        return self.write_bytes(text.encode())

    def create_exclusive(self, data: bytes) -> bool:
        """PUT the object only if no object has this key (`If-None-Match: *`); False when one has."""
        return self._put_unless_refused(data, IfNoneMatch="*")

    def overwrite_if_unchanged(self, data: bytes, etag: str) -> bool:
        """PUT the object only if it is still the one with this ETag (`If-Match`); False when it is not, or gone."""
        return self._put_unless_refused(data, IfMatch=etag)

    def _put_unless_refused(self, data: bytes, **condition: str) -> bool:
        """A conditional PUT (boto3: pyarrow's filesystem sends no conditions); False when the condition fails."""
        from botocore.exceptions import ClientError

        try:
            _client(self.options).put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412"):
                return False
            raise
        return True

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the object."""
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: prefixes exist as soon as an object is put under them."""

    def open_input_file(self) -> Any:
        """A seekable pyarrow file of the object (for Parquet footers and row groups)."""
        return self.fs.open_input_file(self.path)


DataLocation = Path | S3Location
"""A data directory, a cube folder or one of its files."""


def is_s3(location: object) -> bool:
    """True for an object-store location."""
    return isinstance(location, S3Location)


def is_s3_url(value: object) -> bool:
    """True for a string (or S3Location) naming an object-store location."""
    return isinstance(value, S3Location) or (isinstance(value, str) and value.strip().lower().startswith(S3_SCHEME))


def parse_s3_url(url: str, options: S3Options | None = None) -> S3Location:
    """`s3://bucket/prefix` as an S3Location; options from the settings and AWS variables unless given."""
    rest = url.strip()[len(S3_SCHEME):]
    bucket, _, key = rest.partition("/")
    if not bucket or any(c in bucket for c in " \\?#") or "\0" in rest:
        raise DataDirError(f"data_dir {url!r} is not a valid object-store URL; pass s3://bucket/prefix.")
    return S3Location(bucket, key.strip("/"), options or s3_options())


def as_location(value: str | os.PathLike[str] | S3Location) -> DataLocation:
    """A data_dir value (Path, str path or s3:// URL, or an S3Location) as a DataLocation."""
    if isinstance(value, S3Location):
        return value
    if is_s3_url(value):
        return parse_s3_url(str(value))
    return Path(value)


def s3_options(settings: Settings | None = None) -> S3Options:
    """Endpoint, region and credentials: DARTS_AUX_S3_* settings first, then the standard AWS variables."""
    if settings is None:
        from .settings import get_settings

        settings = get_settings()
    env = os.environ
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    return S3Options(
        endpoint_url=settings.s3_endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
        region=settings.s3_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        access_key_id=settings.s3_access_key_id or env.get("AWS_ACCESS_KEY_ID") or None,
        secret_access_key=secret or env.get("AWS_SECRET_ACCESS_KEY") or None,
    )


def icechunk_storage(location: DataLocation) -> icechunk.Storage:
    """The icechunk storage of a repository at a local folder or an S3 prefix."""
    import icechunk

    if not isinstance(location, S3Location):
        return icechunk.local_filesystem_storage(str(location))
    o = location.options
    explicit = o.access_key_id is not None and o.secret_access_key is not None
    return icechunk.s3_storage(
        bucket=location.bucket,
        prefix=location.key,
        region=o.region,
        endpoint_url=o.endpoint_url,
        allow_http=o.allow_http,
        force_path_style=o.endpoint_url is not None,
        access_key_id=o.access_key_id if explicit else None,
        secret_access_key=o.secret_access_key if explicit else None,
        from_env=None if explicit else True,
    )


@lru_cache(maxsize=8)
def _filesystem(options: S3Options) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for a set of options."""
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {"region": options.region}
    if options.endpoint_url:
        scheme, _, host = options.endpoint_url.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    if options.access_key_id and options.secret_access_key:
        kwargs.update(access_key=options.access_key_id, secret_key=options.secret_access_key)
    return pafs.S3FileSystem(**kwargs)


@lru_cache(maxsize=8)
def _client(options: S3Options) -> Any:
    """A boto3 S3 client for a set of options (conditional PUTs, which pyarrow's filesystem cannot send)."""
    import boto3

    explicit = options.access_key_id is not None and options.secret_access_key is not None
    return boto3.client("s3", endpoint_url=options.endpoint_url, region_name=options.region,
                        aws_access_key_id=options.access_key_id if explicit else None,
                        aws_secret_access_key=options.secret_access_key if explicit else None)
