"""Compressed sources: gzip, bz2, xz and zstd, recognised by their magic bytes (or their suffix),
decompressed as a stream under a byte cap.

A compressed file is small on the wire and large in memory: a few KiB of gzip can inflate to
gigabytes (a decompression bomb). Every codec here is read in bounded pieces and stops as soon
as the decompressed data passes the cap, naming the source and the setting; truncated or
corrupt data is bad input naming the codec, never a silently shortened table.

Which library does what: ``gzip`` (and HTTP's ``deflate`` content coding) -> the standard
library's :mod:`gzip` / :mod:`zlib`; ``bz2`` -> :mod:`bz2`; ``xz`` -> :mod:`lzma`; ``zstd`` ->
the ``zstandard`` package (Python 3.11 has no zstd in its standard library).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pipeline.errors import BadInputError

CODECS = ("gzip", "bz2", "xz", "zstd")
SUFFIXES = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zstd": "zstd",
}
# The Content-Type of a compressed file served as it is (not a Content-Encoding).
CONTENT_TYPES = {
    "application/gzip": "gzip",
    "application/x-gzip": "gzip",
    "application/x-bzip2": "bz2",
    "application/x-bzip": "bz2",
    "application/x-xz": "xz",
    "application/zstd": "zstd",
    "application/x-zstd": "zstd",
}
# HTTP content codings (RFC 9110) the HTTP source decodes itself, under its byte caps.
CONTENT_ENCODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "zstd": "zstd"}
ACCEPT_ENCODING = "gzip, deflate, zstd"
LIBRARIES = {"gzip": "zlib", "deflate": "zlib", "bz2": "bz2", "xz": "lzma", "zstd": "zstandard"}
MAGIC_BYTES = 10  # enough of a file's start to recognise every codec
CHUNK = 1 << 20
_ZSTD_MAX_RATIO = 1 << 15  # a 4-byte RLE block (3-byte header, 1 byte) is at most 128 KiB


def codec_from_name(name: str) -> str | None:
    """The codec a file name (or URL path) says, by its last suffix: ``tips.csv.gz`` -> gzip."""
    lowered = name.lower().split("?", 1)[0]
    for suffix, codec in SUFFIXES.items():
        if lowered.endswith(suffix):
            return codec
    return None


def strip_suffix(name: str) -> str:
    """``name`` without its compression suffix (and query string): ``a.csv.gz`` -> ``a.csv``."""
    base = name.split("?", 1)[0]
    for suffix in SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def codec_from_magic(head: bytes) -> str | None:
    """The codec whose signature starts ``head`` (at least :data:`MAGIC_BYTES` bytes of a file)."""
    if head[:3] == b"\x1f\x8b\x08":
        return "gzip"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    # "BZh" and a block size digit, then a block's or the end of stream's signature (a CSV
    # could start with "BZh1"; not followed by these 6 bytes)
    bz2_signatures = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
    if len(head) >= 10 and head[:3] == b"BZh" and head[3] in b"123456789" and head[4:10] in bz2_signatures:
        return "bz2"
    return None


# What a source cannot be, told by its first bytes, so that an archive is not read as text (and
# reported as an encoding problem).
_UNSUPPORTED = {
    b"PK\x03\x04": "a zip archive (or a spreadsheet workbook: .xlsx, .ods)",
    b"7z\xbc\xaf\x27\x1c": "a 7z archive",
    b"\x04\x22\x4d\x18": "lz4-compressed",
    b"Rar!\x1a\x07": "a rar archive",
}


def refuse_unsupported(head: bytes, label: str) -> None:
    """Bad input when ``head`` (the first 512 bytes of a source, decompressed) starts an archive
    or a compression the pipeline does not read: a source is one file."""
    what = next((name for magic, name in _UNSUPPORTED.items() if head.startswith(magic)), None)
    if what is None and head[257:262] == b"ustar":
        what = "a tar archive"
    if what is not None:
        raise BadInputError(
            f"source {label}: is {what}, which the pipeline does not read (rule: a source is one "
            f"CSV or Parquet file, plain or compressed with {', '.join(CODECS)}; extract the file)"
        )


def codec_from_content_type(content_type: str) -> str | None:
    return CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def sniff(handle: BinaryIO) -> str | None:
    """The codec of a seekable binary file, from its first bytes; the position is restored."""
    start = handle.tell()
    head = handle.read(MAGIC_BYTES)
    handle.seek(start)
    return codec_from_magic(head)


class SourceReadError(Exception):
    """Reading the compressed input itself failed (a network error, not the data): ``cause`` is
    the original exception, re-raised by :func:`read_decompressed` for the caller to classify.
    Not an ``OSError``, so that no decompressor mistakes it for corrupt data."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class _Guarded(io.RawIOBase):
    """The compressed input as the decompressors read it: failures of the input itself are kept
    apart from failures of the data, and an optional cap bounds the compressed bytes read."""

    def __init__(self, handle: BinaryIO, on_read=None):
        self.handle = handle
        self.on_read = on_read
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.handle.read(size)
        except OSError as exc:
            raise SourceReadError(exc) from exc
        self.consumed += len(data)
        if self.on_read is not None:
            self.on_read(self.consumed)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _stdlib_chunks(handle: BinaryIO, codec: str) -> Iterator[bytes]:
    import bz2
    import gzip
    import lzma

    opener = {"gzip": gzip.GzipFile, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[codec]
    with opener(fileobj=handle) if codec == "gzip" else opener(handle) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _deflate_chunks(handle: BinaryIO) -> Iterator[bytes]:
    """HTTP's ``deflate``: a zlib stream (or, from servers that get it wrong, raw deflate)."""
    pending = handle.read(2)
    if not pending:
        return  # an empty body
    raw = len(pending) < 2 or (pending[0] & 0x0F) != 8 or ((pending[0] << 8) | pending[1]) % 31 != 0
    decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    while True:
        if not pending:
            pending = handle.read(CHUNK)
            if not pending:  # the input is all read: what zlib still holds back
                while not decoder.eof and (out := decoder.decompress(b"", CHUNK)):
                    yield out
                break
        out = decoder.decompress(pending, CHUNK)
        pending = decoder.unconsumed_tail
        if out:
            yield out
        if decoder.eof:
            break
    if not decoder.eof:
        raise EOFError("Compressed data ended before the end-of-stream marker was reached")


def _zstd_chunks(handle: BinaryIO, remaining) -> Iterator[bytes]:
    """zstd frames one after another. ``zstandard``'s stream reader returns a truncated frame's
    data without an error, so a decompression object (which says when a frame is complete) is
    fed input in pieces small enough that their output stays near the cap: ``remaining()``
    is how many more bytes the cap allows."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    decoder = decompressor.decompressobj()
    started = False
    pending = b""
    while True:
        size = max(64, min(CHUNK, remaining() // _ZSTD_MAX_RATIO))
        piece = pending[:size] if pending else handle.read(size)
        pending = pending[len(piece) :] if pending else b""
        if not piece:
            break
        if decoder.eof:
            decoder = decompressor.decompressobj()
        started = True
        out = decoder.decompress(piece)
        if out:
            yield out
        if decoder.eof and decoder.unused_data:
            pending = decoder.unused_data + pending
    if started and not decoder.eof:
        raise EOFError("Compressed data ended before the end of the last frame was reached")


def _errors() -> tuple[type[BaseException], ...]:
    import lzma

    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def decompressed_too_big(label: str, codec: str, cap: int, setting: str) -> BadInputError:
    return BadInputError(
        f"source {label}: its {codec} data decompresses to more than {setting}={cap} bytes (rule: a "
        f"source is at most {setting} bytes once decompressed, checked while it is decompressed; "
        "raise it if the data is right)"
    )


def read_decompressed(
    handle: BinaryIO,
    codec: str,
    label: str,
    cap: int,
    setting: str,
    on_read=None,
    on_output=None,
) -> bytes:
    """Decompress ``handle`` (``codec`` data) into bytes, refusing it as soon as more than ``cap``
    bytes come out (``setting`` names the cap in the error). ``on_read(compressed_so_far)`` may
    refuse the compressed input itself, ``on_output(decompressed_so_far)`` the output (a second
    cap). Corrupt or truncated data is :class:`BadInputError`
    naming ``label`` and the codec; a failure reading the input re-raises that failure."""
    if codec == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise BadInputError(
                f"source {label}: is zstd-compressed, and reading zstd needs the 'zstandard' package "
                "(a dependency of the pipeline: pip install zstandard)"
            ) from None
    guarded = _Guarded(handle, on_read)
    out = bytearray()
    if codec == "zstd":
        chunks = _zstd_chunks(guarded, lambda: cap + 1 - len(out))
    elif codec == "deflate":
        chunks = _deflate_chunks(guarded)
    elif codec in ("gzip", "bz2", "xz"):
        chunks = _stdlib_chunks(guarded, codec)
    else:  # pragma: no cover - callers pass a codec named here
        raise ValueError(f"unknown codec {codec!r}")
    try:
        for chunk in chunks:
            out += chunk
            if len(out) > cap:
                raise decompressed_too_big(label, codec, cap, setting)
            if on_output is not None:
                on_output(len(out))
    except SourceReadError as exc:
        raise exc.cause from None
    except _errors() as exc:
        if isinstance(exc, EOFError):
            problem = "the data ends before the end of the compressed stream (a truncated file?)"
        else:
            problem = f"the data is corrupt ({type(exc).__name__}: {exc})"
        raise BadInputError(
            f"source {label}: cannot be decompressed as {codec}: {problem} (rule: a compressed source "
            f"is complete, valid {codec} data; read with {LIBRARIES[codec]})"
        ) from None
    finally:
        chunks.close()
    return bytes(out)


def decompress_bytes(data: bytes, codec: str, label: str, cap: int, setting: str) -> bytes:
    """:func:`read_decompressed` of data already in memory."""
    return read_decompressed(io.BytesIO(data), codec, label, cap, setting)
