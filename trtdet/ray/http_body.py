"""The image in an HTTP request body: the raw bytes, or one part of a ``multipart/form-data`` form;
and the limits that keep one request from holding the service.

Multipart bodies are parsed by the standard library's MIME parser (``email``), after their
parts are counted (at most ``MAX_PARTS``: the parser's time grows with them); the image is the
part named ``image`` or ``file``, else the first part carrying a file name. Both run on the
ingress's decoding threads, never on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import email.parser
import email.policy
from collections.abc import AsyncIterator

from trtdet.errors import InputError

#: The most parts a multipart form may have (an image and a few fields need far fewer).
MAX_PARTS = 16


def _boundary(content_type: str, source: str) -> bytes:
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise InputError(source, "malformed multipart body (its Content-Type names no boundary)")
    return boundary.encode("latin-1", "replace")


def image_bytes(body: bytes, content_type: str, source: str = "request") -> bytes:
    """The encoded image of a request; ``InputError`` when there is none or the form has too many parts."""
    if not content_type.lower().startswith("multipart/"):
        if not body:
            raise InputError(source, "empty body (send the image bytes, or a multipart form with an 'image' field)")
        return body
    delimiters = body.count(b"--" + _boundary(content_type, source))  # each part's, and the closing one
    if delimiters - 1 > MAX_PARTS:
        raise InputError(source, f"multipart form of {delimiters - 1} parts; at most {MAX_PARTS} are accepted")
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise InputError(source, "malformed multipart body")
    parts = list(message.iter_parts())
    chosen = None
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if name in ("image", "file"):
            chosen = part
            break
    if chosen is None:
        chosen = next((part for part in parts if part.get_filename()), None)
    if chosen is None:
        raise InputError(source, "the multipart form has no 'image' field or file")
    data = chosen.get_payload(decode=True) or b""
    if not data:
        raise InputError(source, "the multipart form's image is empty")
    return data


def decode_cost(data: bytes) -> int:
    """Bytes that decoding ``data`` holds: its decoded BGR pixels as the header declares them
    (checked against the image-size limit first), else the encoded size."""
    from trtdet.io.image_header import declared_size

    size = declared_size(data)
    return max(len(data), size[0] * size[1] * 3) if size is not None else len(data)


class AsyncByteBudget:
    """Bytes of decoded images the ingress holds at once, at most ``limit`` (as ``trtdet run``'s
    read-ahead); one image over the whole limit still goes through alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed: asyncio.Condition | None = None

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Wait (without blocking the event loop) until ``nbytes`` fit, and hold them meanwhile."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        changed = self._changed
        async with changed:
            await changed.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.limit)
            self.used += nbytes
        try:
            yield
        finally:
            async with changed:
                self.used -= nbytes
                changed.notify_all()
