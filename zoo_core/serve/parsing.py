"""Reading a ``POST /predict`` request: its images, its model name and its options, under the limits.

The body is read once, counted against ``max_bytes`` as it arrives (a Content-Length over the limit
is refused before any byte is read), then parsed by its Content-Type: multipart (Starlette's parser,
on the bytes already read), JSON, or a raw image. Images are decoded later, off the event loop
(:func:`load_images`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import RequestError
from .inputs import Limits, decode_base64, decode_image, fetch_url, parse_value, too_large

#: JSON body keys ``POST /predict`` reads
JSON_KEYS = ("model", "images", "image", "options")


@dataclass(frozen=True)
class ImageItem:
    """One image of a request before decoding: its bytes, its base64 text, or its URL (one is set)."""

    source: str
    data: bytes | None = None
    b64: str | None = None
    url: str | None = None

    def load(self, limits: Limits) -> Any:
        """The decoded RGB PIL image (fetching the URL first). Blocking: call it off the event loop."""
        if self.url is not None:
            data = fetch_url(self.url, limits)
        elif self.b64 is not None:
            data = decode_base64(self.b64, self.source, limits)
        else:
            data = self.data or b""
        return decode_image(data, self.source, limits)


def load_images(items: Sequence[ImageItem], limits: Limits) -> list[Any]:
    """Every image of a request, decoded (see :meth:`ImageItem.load`)."""
    return [item.load(limits) for item in items]


async def read_request(request: Request, limits: Limits) -> tuple[str | None, list[ImageItem], dict[str, Any]]:
    """``(model name or None, images, options)`` from any body ``POST /predict`` takes, plus the query string."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: list[tuple[str, Any]] = [(k, parse_value(v)) for k, v in request.query_params.multi_items()]
    items: list[ImageItem] = []
    if ctype == "multipart/form-data":
        form = await parse_form(request, await read_body(request, limits), limits)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                items.append(ImageItem(value.filename or f"<image {len(items)}>", data=await value.read()))
            elif key == "url":
                items.append(ImageItem(value, url=value))
            else:
                fields.append((key, parse_value(value)))
    elif ctype == "application/json":
        fields += json_fields(await read_body(request, limits), items)
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        items.append(ImageItem("<body>", data=await read_body(request, limits)))
    else:
        shown = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
        raise RequestError(415, "unsupported_media_type", f"POST /predict got {shown}; send multipart/form-data "
                                                          "(image files), application/json (base64 images or "
                                                          "URLs) or an image/* body")
    if not items:
        raise RequestError(400, "no_image", "POST /predict got no image: send files (multipart), \"images\" "
                                            "(JSON) or an image/* body")
    if len(items) > limits.max_images:
        raise RequestError(413, "too_many_images", f"{len(items)} images in one request, over this server's limit "
                                                   f"of {limits.max_images}; split them")
    model, options = None, {}
    for key, value in fields:
        if key == "model":
            value = value if isinstance(value, str) else json.dumps(value)  # "model=3" names a model "3"
            if model is not None and model != value:
                raise RequestError(400, "bad_request", f"two models named: {model!r} and {value!r}")
            model = value
        elif key in options and options[key] != value:
            raise RequestError(400, "bad_option", f"option {key} given twice: {options[key]!r} and {value!r}")
        else:
            options[key] = value
    return model, items, options


async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole body, refused (413) as soon as it passes ``limits.max_bytes`` (Content-Length or counted)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise too_large(int(declared), limits, "the request body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_bytes:
            raise too_large(size, limits, "the request body")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_form(request: Request, body: bytes, limits: Limits) -> Any:
    """The multipart form of an already read ``body`` (a 400 naming what is malformed)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, replay).form(max_files=limits.max_images, max_fields=100)
    except StarletteHTTPException as exc:
        raise RequestError(400, "bad_multipart", f"malformed multipart body: {exc.detail}") from None
    except Exception as exc:  # noqa: BLE001 - python-multipart's own errors
        raise RequestError(400, "bad_multipart", f"malformed multipart body: {exc}") from None


def json_fields(body: bytes, items: list[ImageItem]) -> list[tuple[str, Any]]:
    """Append a JSON body's images to ``items``; return its model and options as ``(key, value)`` fields."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RequestError(400, "bad_json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(400, "bad_json", f"the JSON body must be an object with {', '.join(JSON_KEYS)}; "
                                            f"got {type(data).__name__}")
    unknown = sorted(set(data) - set(JSON_KEYS))
    if unknown:
        raise RequestError(400, "bad_json", f"unknown key(s) {unknown} in the JSON body; it takes "
                                            f"{', '.join(JSON_KEYS)} (task options go in \"options\")")
    images = data.get("images", [])
    if not isinstance(images, list):
        raise RequestError(400, "bad_json", "\"images\" must be a list of base64 strings, URLs or objects")
    if "image" in data:
        images = [data["image"], *images]
    items += [json_image(image, i) for i, image in enumerate(images)]
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise RequestError(400, "bad_option", f"\"options\" must be an object of task options, got {options!r}")
    fields: list[tuple[str, Any]] = [("model", data["model"])] if data.get("model") is not None else []
    return fields + list(options.items())


def json_image(image: Any, i: int) -> ImageItem:
    """One JSON image: a base64 string, a ``data:`` URL, an ``http(s)`` URL, or an object holding one."""
    name = f"<image {i}>"
    if isinstance(image, dict):
        extra = sorted(set(image) - {"base64", "url", "name"})
        if extra or ("base64" in image) == ("url" in image):
            raise RequestError(400, "bad_json", f"images[{i}]: an object needs one of \"base64\" or \"url\" (and "
                                                f"optionally \"name\"); got keys {sorted(image)}")
        name = str(image.get("name") or name)
        if "url" in image:
            return ImageItem(name, url=str(image["url"]))
        image = image["base64"]
    if not isinstance(image, str):
        raise RequestError(400, "bad_json", f"images[{i}]: expected a base64 string or URL, got "
                                            f"{type(image).__name__}")
    if image.lower().startswith(("http://", "https://")):
        return ImageItem(image, url=image)
    return ImageItem(name, b64=image)
