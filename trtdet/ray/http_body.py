"""The image in an HTTP request body: the raw bytes, or one part of a ``multipart/form-data`` form.

Multipart bodies are parsed by the standard library's MIME parser (``email``); the image is
the part named ``image`` or ``file``, else the first part carrying a file name.
"""

from __future__ import annotations

import email.parser
import email.policy

from trtdet.errors import InputError


def image_bytes(body: bytes, content_type: str, source: str = "request") -> bytes:
    """The encoded image of a request; ``InputError`` when there is none."""
    if not content_type.lower().startswith("multipart/"):
        if not body:
            raise InputError(source, "empty body (send the image bytes, or a multipart form with an 'image' field)")
        return body
    header = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
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
