"""An S3 object as a stream that the syncer unpacks while it downloads.

The download itself is boto3's: ``download_fileobj`` splits the object into ranged GETs
that run in parallel and, for a target that cannot seek, hands the parts over in order
(s3transfer's non-seekable output manager). This module only turns that push into a
pull, through a bounded queue, so the unpacker reads the bundle as it arrives: no copy
of the bundle in /tmp (512 MB by default on Lambda, smaller than a torch release), and
no second and third pass over it to hash and to unpack.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any

# Parallel ranged GETs of 8 MiB: S3 serves each connection at tens of MB/s, so several at
# once are what fills a Lambda's network link. The queue holds at most 64 MiB of the
# bundle that the unpacker has not read yet.
CONCURRENCY = 8
PART_BYTES = 8 * 1024 * 1024
QUEUE_CHUNKS = 256  # s3transfer writes 256 KiB at a time
_POLL_SECONDS = 0.5


class DownloadFailed(Exception):
    """The object could not be downloaded (missing, forbidden, connection lost)."""


class _Abandoned(Exception):
    """The reader stopped early; the download is to stop too."""


class _QueueWriter:
    """The non-seekable target s3transfer writes the parts into, in order."""

    def __init__(self, chunks: queue.Queue[bytes | None], stopped: threading.Event) -> None:
        self._chunks = chunks
        self._stopped = stopped

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        chunk = bytes(data)
        while True:
            if self._stopped.is_set():
                raise _Abandoned()
            try:
                self._chunks.put(chunk, timeout=_POLL_SECONDS)
                return len(chunk)
            except queue.Full:
                continue


class S3Stream(io.RawIOBase):
    """Read s3://bucket/key front to back while boto3 downloads it in parallel parts."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        self._chunks: queue.Queue[bytes | None] = queue.Queue(QUEUE_CHUNKS)
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._pending = memoryview(b"")
        self._done = False
        config = TransferConfig(
            multipart_threshold=PART_BYTES,
            multipart_chunksize=PART_BYTES,
            max_concurrency=CONCURRENCY,
        )

        def run() -> None:
            try:
                client.download_fileobj(
                    bucket, key, _QueueWriter(self._chunks, self._stopped), Config=config
                )
            except BaseException as exc:  # handed to the reader, which raises it
                self._error = exc
            finally:
                self._put_end()

        self._thread = threading.Thread(target=run, name=f"s3-download-{key}", daemon=True)
        self._thread.start()

    def _put_end(self) -> None:
        while not self._stopped.is_set():
            try:
                self._chunks.put(None, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and not self._done:
            chunk = self._chunks.get()
            if chunk is None:
                self._done = True
                self._thread.join()
                if self._error is not None and not isinstance(self._error, _Abandoned):
                    raise DownloadFailed(
                        f"{type(self._error).__name__}: {self._error}"
                    ) from self._error
            else:
                self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        """Stop the download if the reader gave up early, and wait for its thread."""
        if not self.closed:
            self._stopped.set()
            while self._thread.is_alive():
                try:
                    self._chunks.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    continue
            self._thread.join()
        super().close()
