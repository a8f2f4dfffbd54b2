"""Turning what a request carries into images and options, refusing anything else by name.

An image arrives as bytes (a multipart file, a raw ``image/*`` body, base64 in JSON) or as an
``http(s)`` URL the server fetches (never when ``ZOO_OFFLINE=1``; under the zoo's download limits:
:mod:`zoo_core.transfer`). It is decoded here as the zoo reads image files
(:func:`zoo_core.data.images.to_rgb`, EXIF orientation applied), after a check of its byte size and
pixel count, so a decompression bomb is refused before it is decoded. Nothing here imports FastAPI.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Mapping

from PIL import Image, ImageOps, UnidentifiedImageError

from ..data.images import to_rgb
from ..paths import offline
from .defaults import DEFAULT_MAX_BYTES, DEFAULT_MAX_IMAGES, DEFAULT_MAX_PIXELS
from .errors import RequestError

#: seconds a URL fetch may take in all (the zoo's ZOO_DOWNLOAD_TIMEOUT when that is shorter)
URL_SECONDS = 30.0


@dataclass(frozen=True)
class Limits:
    """What one request may carry: body bytes, pixels per image, images, and whether URLs are fetched."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_images: int = DEFAULT_MAX_IMAGES
    allow_urls: bool = True

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a whole number >= 1")


def too_large(size: int, limits: Limits, what: str) -> RequestError:
    return RequestError(413, "too_large", f"{what} is {size} bytes, over this server's limit of {limits.max_bytes} "
                                          "bytes (zoo serve --max-bytes); send a smaller image")


def decode_image(data: bytes, source: str, limits: Limits) -> Image.Image:
    """``data`` as an RGB PIL image (EXIF orientation applied); a 400/413 naming ``source`` otherwise."""
    if not data:
        raise RequestError(400, "not_an_image", f"{source}: empty (zero bytes); send an image file")
    if len(data) > limits.max_bytes:
        raise too_large(len(data), limits, source)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > limits.max_pixels:
                raise RequestError(413, "too_many_pixels", f"{source}: {width}x{height} = {width * height} pixels, "
                                                           f"over this server's limit of {limits.max_pixels}; "
                                                           "send a smaller image")
            img.load()  # decode fully now: a truncated file fails here
            return to_rgb(ImageOps.exif_transpose(img))
    except RequestError:
        raise
    except MemoryError:
        raise RequestError(413, "too_many_pixels", f"{source}: too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - anything PIL raises on these bytes is the input's fault
        why = ("not an image format the server reads" if isinstance(exc, UnidentifiedImageError) else
               f"a damaged or truncated image ({type(exc).__name__}: {exc})")
        raise RequestError(400, "not_an_image", f"{source} ({len(data)} bytes): {why}; send a JPEG, PNG, WebP, "
                                                "BMP, GIF or TIFF file") from None


def decode_base64(text: str, source: str, limits: Limits) -> bytes:
    """The bytes of a base64 string (a ``data:image/...;base64,`` URL too)."""
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise RequestError(400, "bad_base64", f"{source}: a data: URL must be base64 "
                                                  "(data:image/png;base64,...)")
    if len(text) * 3 // 4 > limits.max_bytes + 3:
        raise too_large(len(text) * 3 // 4, limits, source)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, "bad_base64", f"{source}: not valid base64 ({exc}); send the image file's bytes "
                                              "base64-encoded, or an http(s) URL") from None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) (urllib's default also follows ftp://)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not newurl.lower().startswith(("http://", "https://")):
            raise RequestError(400, "bad_url", f"image URL {req.full_url} redirects to {newurl}, which is not "
                                               "http(s)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, limits: Limits) -> bytes:
    """The body of an ``http(s)`` image URL, at most ``limits.max_bytes``, under the zoo's download limits.

    Refused (400) when ``ZOO_OFFLINE=1`` or the server was started without URL fetching; a slow,
    stalled or failing server is a 400 naming the URL (it is the request's URL at fault, not this
    server). Blocking: call it off the event loop.
    """
    from ..errors import WeightsError
    from ..transfer import Deadline, download_timeout, read_body

    if offline():
        raise RequestError(400, "offline", f"image URL {url} refused: ZOO_OFFLINE=1, so this server makes no "
                                           "network calls; send the image itself (multipart or base64)")
    if not limits.allow_urls:
        raise RequestError(400, "urls_disabled", f"image URL {url} refused: this server does not fetch URLs "
                                                 "(started with --no-urls); send the image itself")
    if not url.lower().startswith(("http://", "https://")):
        raise RequestError(400, "bad_url", f"image URL {url!r}: only http:// and https:// URLs are fetched")
    deadline = Deadline(url, "Send the image itself instead.", seconds=min(download_timeout(), URL_SECONDS))
    chunks: list[bytes] = []
    size = 0

    def write(block: bytes) -> None:
        nonlocal size
        size += len(block)
        if size > limits.max_bytes:
            raise too_large(size, limits, f"image URL {url}")
        chunks.append(block)

    try:
        request = urllib.request.Request(url, headers={"User-Agent": "zoo-serve"})
        with urllib.request.build_opener(_HttpOnlyRedirects()).open(request, timeout=deadline.wait()) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            if total is not None and total > limits.max_bytes:
                raise too_large(total, limits, f"image URL {url}")
            read_body(resp, write, deadline, total)
    except RequestError:
        raise
    except urllib.error.HTTPError as exc:
        raise RequestError(400, "url_failed", f"image URL {url}: the server answered {exc.code} {exc.reason}") from None
    except (WeightsError, OSError, ValueError) as exc:  # URLError, timeouts, resets, a malformed URL
        reason = getattr(exc, "reason", None) or exc
        raise RequestError(400, "url_failed", f"image URL {url} could not be fetched: {reason}") from None
    return b"".join(chunks)


def parse_value(text: str) -> Any:
    """A form or query value as JSON when it reads as JSON (``3``, ``0.5``, ``[64, 48]``, ``true``), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_options(options: Mapping[str, Any], declared: Mapping[str, str] | None, *, model: str,
                  task: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """``options`` when the task declares every name (``Task.predict_options``); a 400 naming the others.

    The values are checked by the task itself when it predicts (an ``OptionError`` becomes a 400); an
    ``image_size`` larger than ``max_pixels`` (a client asking the server to allocate a huge resize) is
    a 413 here.
    """
    options = dict(options)
    size = options.get("image_size")
    sides = size if isinstance(size, (list, tuple)) and len(size) == 2 else (size, size)
    if all(isinstance(s, int) and not isinstance(s, bool) for s in sides) and sides[0] * sides[1] > max_pixels:
        raise RequestError(413, "too_large", f"image_size={size!r} asks for {sides[0] * sides[1]} pixels a "
                                             f"resize, more than this server's limit of {max_pixels}")
    if declared is not None:
        unknown = sorted(set(options) - set(declared))
        if unknown:
            known = ", ".join(f"{k} ({v})" for k, v in declared.items()) or "none"
            raise RequestError(400, "bad_option", f"model {model!r} ({task}) takes no option "
                                                  f"{', '.join(map(repr, unknown))}; its options: {known}")
    return options
