"""Files: local paths, ``pkg://`` (a file shipped in an installed package) and ``s3://``, byte for
byte, or, when compressed (gzip, bz2, xz, zstd), as their decompressed bytes."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.compression import codec_from_name, read_decompressed, refuse_unsupported, sniff
from pipeline.errors import BadInputError, ConfigError, RetryableError
from pipeline.sources.base import FILE_SCHEMES, RawData, too_big
from pipeline.tabular import detect_format

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import S3Settings, SourceSettings

logger = logging.getLogger(__name__)

# files --------------------------------------------------------------------------------------


def resolve_package_uri(uri: str) -> Path:
    """``pkg://<package>/<path>`` -> the file shipped inside an installed package (never a file
    outside it: no absolute path, no '..', no symbolic link leading out)."""
    rest = uri[len("pkg://") :]
    package, _, inner = rest.partition("/")
    usage = f"data.source.uri {uri!r}: use pkg://<package>/<path inside the package>"
    if not package or not inner or inner.startswith(("/", "\\")) or ".." in Path(inner).parts:
        raise ConfigError(usage)
    try:
        root = Path(str(resources.files(package)))
    except ModuleNotFoundError:
        raise ConfigError(f"data.source.uri {uri!r}: package {package!r} is not installed") from None
    path = root / inner
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"{usage} (the path leads outside the package)")
    return path


def _read_capped(handle, label: str, cap: int) -> bytes:
    data = handle.read(cap + 1)
    if len(data) > cap:
        raise too_big(label, len(data), cap, "data.source.max_bytes")
    return data


# The datasets scikit-learn ships inside its package (read offline, nothing downloaded), by the
# name ``sklearn://<name>`` gives, with the loader's options: raw (unscaled) values.
SKLEARN_DATASETS: dict[str, tuple[str, dict[str, object]]] = {
    "diabetes": ("load_diabetes", {"scaled": False}),
    "wine": ("load_wine", {}),
    "iris": ("load_iris", {}),
    "breast_cancer": ("load_breast_cancer", {}),
}


def _fetch_sklearn(uri: str, cap: int) -> RawData:
    """``sklearn://<name>``: one of scikit-learn's bundled datasets, its features and its
    ``target`` column as one table, snapshotted as Parquet (the loader joins what the package
    keeps in separate compressed files)."""
    name = uri[len("sklearn://") :].strip("/")
    if name not in SKLEARN_DATASETS:
        raise ConfigError(
            f"data.source.uri {uri!r}: unknown scikit-learn dataset {name!r}; bundled ones: "
            + ", ".join(f"sklearn://{n}" for n in sorted(SKLEARN_DATASETS))
        )
    import sklearn.datasets

    from pipeline.sources.base import to_parquet

    loader, options = SKLEARN_DATASETS[name]
    data = to_parquet(getattr(sklearn.datasets, loader)(as_frame=True, **options).frame)
    if len(data) > cap:
        raise too_big(uri, len(data), cap, "data.source.max_bytes")
    return RawData(data, "parquet", uri, {"uri": uri, "loader": f"sklearn.datasets.{loader}"})


def _read_file(handle, label: str, name: str, cap: int, details: dict) -> bytes:
    """The file's bytes, decompressed when its first bytes (or, failing that, its name) say it is
    compressed: the cap bounds what is read and, again, what comes out of the decompressor."""
    codec = sniff(handle) or codec_from_name(name)
    if codec is None:
        data = _read_capped(handle, label, cap)
        refuse_unsupported(data[:512], label)
        return data

    def compressed_cap(read: int) -> None:
        if read > cap:
            raise too_big(label, read, cap, "data.source.max_bytes")

    data = read_decompressed(handle, codec, label, cap, "data.source.max_bytes", on_read=compressed_cap)
    refuse_unsupported(data[:512], f"{label} (decompressed)")
    details["compression"] = codec
    details["compressed_bytes"] = handle.tell()
    logger.info("%s: %s-compressed, %d bytes, %d decompressed", label, codec, handle.tell(), len(data))
    return data


def _fetch_file(source: SourceSettings, s3: S3Settings) -> RawData:
    uri = source.uri
    scheme = urlparse(uri).scheme.lower() if "://" in uri else ""
    if scheme == "sklearn":
        return _fetch_sklearn(uri, source.max_bytes)
    if scheme and scheme not in FILE_SCHEMES:
        raise ConfigError(
            f"data.source.uri: scheme {scheme!r} is not supported for a file source (use a local path, "
            "file://, s3://, pkg:// or sklearn://; http(s):// URLs are fetched with data.source.kind "
            "'http' or 'auto')"
        )
    fmt = detect_format(uri, source.format)
    cap = source.max_bytes
    if uri.startswith("s3://"):
        from pipeline.storage import filesystem_for

        fs, path = filesystem_for(uri, s3)
        try:
            details = {"uri": uri}
            with fs.open(path, "rb") as handle:
                size = getattr(handle, "size", None)
                if size is not None and size > cap:
                    raise too_big(uri, size, cap, "data.source.max_bytes")
                data = _read_file(handle, uri, path, cap, details)
        except FileNotFoundError:
            raise BadInputError(f"source {uri}: no such object") from None
        except PermissionError as exc:
            raise BadInputError(f"source {uri}: access denied ({exc})") from None
        except OSError as exc:
            raise RetryableError(f"source {uri}: cannot read from S3: {exc}") from exc
        return RawData(data, fmt, uri, details)
    if uri.startswith("pkg://"):
        path = resolve_package_uri(uri)
    else:
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()
    if not path.is_file():
        raise BadInputError(f"source {uri}: no such file ({path})")
    size = path.stat().st_size
    if size > cap:
        raise too_big(str(path), size, cap, "data.source.max_bytes")
    details = {"uri": uri, "path": str(path)}
    with path.open("rb") as handle:
        data = _read_file(handle, str(path), path.name, cap, details)
    return RawData(data, fmt, str(path), details)
