"""What ``model.predict`` reads, lazily: files, folders, globs, URLs, videos, arrays, PIL images, tensors.

:func:`iter_sources` turns what a user hands ``predict`` into a stream of :class:`SourceItem`, each of
which reads its image only when asked. A folder is listed (paths, not pixels), a video is opened and
decoded frame by frame, a generator is read as it yields, so a folder of a million images or an hour
of video is read one batch at a time (:mod:`zoo_core.predict_stream`).

What each kind of input is:

- ``str`` / ``Path``: an ``http(s)://`` URL (an image, fetched under the zoo's download limits and
  the server's size limits; refused naming the URL when ``ZOO_OFFLINE=1``); a folder (its image files,
  recursively, sorted; hidden files skipped); a video file (:data:`VIDEO_EXTENSIONS`: every frame, in
  order, decoded by PyAV -- ``pip install av``; torchvision no longer decodes video); an image file;
  or a glob pattern (``"data/**/*.jpg"``: the images and videos it matches, sorted).
- a PIL image (any mode; EXIF orientation applied).
- a ``torch.Tensor``: a ``(C, H, W)`` image or a ``(B, C, H, W)`` batch, in [0, 1] (floats) or 0..255
  (integers) -- :func:`zoo_core.data.images.image_tensor`.
- a ``numpy.ndarray``: ``(H, W)``, ``(H, W, C)`` or a ``(B, H, W, C)`` batch, channels last as PIL
  (``np.asarray(img)``) and OpenCV (``cv2.imread``) give them; ``uint8`` is 0..255, floats are [0, 1].
  Channels are read as **RGB**; OpenCV's arrays are BGR, so pass ``bgr=True`` for them (it applies to
  numpy arrays only: files, PIL images and video frames are decoded as RGB by the zoo itself).
- a list or tuple of any of these, or any other iterable (a generator of frames, read as it yields).
"""

from __future__ import annotations

import glob
import itertools
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from .data.images import is_image_file, load_image, to_rgb
from .errors import DataError, InputError

#: files read as videos (every frame a prediction)
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
#: annotated copies keep their input's format when PIL writes it; anything else is saved as PNG
SAVE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class SourceItem:
    """One image to predict: its name, where an annotated copy of it goes, and how to read it.

    ``source`` becomes the prediction's ``source`` (a path, ``clip.mp4#frame=12``, ``<tensor 3>``);
    ``save_name`` is the relative path ``zoo predict --save`` writes it to; ``index`` counts inputs
    from 0 (error messages say ``input 3``); ``frame`` is the frame number within a video.
    ``ready``: :meth:`load` gives an image already decoded by the zoo (RGB, oriented, checked), not a
    user's object that :func:`~zoo_core.data.images.prepare_image` still has to check.
    """

    source: str
    save_name: str
    load: Callable[[], Any]
    index: int = 0
    ready: bool = False
    frame: int | None = None


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def is_video_file(path: str | Path) -> bool:
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def save_name(name: str, default_suffix: str = ".png") -> str:
    """``name`` with a suffix PIL writes (its own when it is one, else ``default_suffix``)."""
    p = Path(name)
    if p.suffix.lower() in SAVE_SUFFIXES:
        return p.as_posix()
    return (p.with_suffix(default_suffix) if p.suffix else p.with_name(p.name + default_suffix)).as_posix()


def iter_sources(inputs: Any, *, channels: int = 3, bgr: bool = False) -> Iterator[SourceItem]:
    """The images in ``inputs`` (see the module docstring), one :class:`SourceItem` each, in order,
    for a model taking ``channels`` channels (a tensor batch is checked for it once).

    Paths are resolved as the stream reaches them; a path that does not exist, a glob matching
    nothing or a folder without images is an :class:`~zoo_core.errors.InputError` naming it.
    """
    counter = itertools.count()
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            yield from _expand(item, counter, bgr, channels, top=False)
    elif _single(inputs):
        yield from _expand(inputs, counter, bgr, channels, top=True)
    elif isinstance(inputs, Iterable) and not isinstance(inputs, (bytes, bytearray, dict)):
        for item in inputs:  # a generator: read as it yields
            yield from _expand(item, counter, bgr, channels, top=False)
    else:
        raise TypeError(f"predict() cannot read a {type(inputs).__name__}: pass a path, folder, glob, URL, video, "
                        "PIL image, tensor or numpy array, or a list of them")


def _single(x: Any) -> bool:
    return isinstance(x, (str, Path, Image.Image, torch.Tensor, np.ndarray))


def _expand(item: Any, counter: Iterator[int], bgr: bool, channels: int, *, top: bool) -> Iterator[SourceItem]:
    if isinstance(item, Path) or isinstance(item, str):
        yield from _path_items(str(item), counter)
    elif isinstance(item, Image.Image):
        i = next(counter)
        yield SourceItem(f"<image {i}>", f"image_{i:06d}.png", lambda: item, index=i)
    elif isinstance(item, torch.Tensor):
        yield from _tensor_items(item, counter, channels, top=top)
    elif isinstance(item, np.ndarray):
        yield from _array_items(item, counter, bgr)
    else:
        i = next(counter)
        raise TypeError(f"input {i}: expected a path, URL, PIL image, tensor or numpy array, got "
                        f"{type(item).__name__}")


# ---- paths, folders, globs, URLs, videos ----------------------------------------------------------
def _path_items(text: str, counter: Iterator[int]) -> Iterator[SourceItem]:
    if is_url(text):
        i = next(counter)
        name = Path(urllib.parse.urlparse(text).path).name or f"url_{i:06d}"
        yield SourceItem(text, save_name(name), lambda: load_url(text), index=i, ready=True)
        return
    path = Path(text)
    if path.is_dir():
        from .data.folders import _images_under  # the training readers' rule: sorted, hidden files skipped

        files = _images_under(path)
        if not files:
            videos = sorted(p.name for p in path.rglob("*") if is_video_file(p))[:3]
            also = f" (it holds videos, {', '.join(videos)}: pass them themselves)" if videos else ""
            raise InputError(f"{path} holds no image files{also}")
        for f in files:
            yield _file_item(f, f.relative_to(path).as_posix(), next(counter))
    elif path.is_file():
        if is_video_file(path):
            yield from video_items(path, path.stem, counter)
        else:
            yield _file_item(path, path.name, next(counter))
    elif _is_glob(text):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True)
                         if Path(p).is_file() and (is_image_file(p) or is_video_file(p)))
        if not matches:
            raise InputError(f"{text!r} matches no image or video file")
        for f in matches:
            if is_video_file(f):
                yield from video_items(f, f.stem, counter)
            else:
                yield _file_item(f, f.name, next(counter))
    else:
        raise InputError(f"input {next(counter)}: {text} does not exist (not a file, folder, glob or "
                         "http(s) URL)")


def _file_item(path: Path, name: str, i: int) -> SourceItem:
    return SourceItem(str(path), save_name(name), lambda: load_image(path), index=i, ready=True)


def load_url(url: str) -> Image.Image:
    """An image URL's picture (RGB, EXIF orientation applied), fetched as ``zoo serve`` fetches one:
    under ``ZOO_DOWNLOAD_TIMEOUT`` and the zoo's stall rules, at most the server's byte and pixel limits.

    ``ZOO_OFFLINE=1`` refuses it naming the URL; every failure is an
    :class:`~zoo_core.errors.InputError` naming the URL.
    """
    from .paths import offline

    if offline():
        raise InputError(f"image URL {url} refused: ZOO_OFFLINE=1, so the zoo makes no network calls; download "
                         "the image and pass the file")
    from .serve.errors import RequestError
    from .serve.inputs import Limits, decode_image, fetch_url

    try:
        limits = Limits()
        return decode_image(fetch_url(url, limits), f"image URL {url}", limits)
    except RequestError as exc:
        raise InputError(exc.detail) from None


def video_items(path: Path, folder: str, counter: Iterator[int]) -> Iterator[SourceItem]:
    """One item per frame of the video at ``path``, decoded as the stream reaches it (PyAV)."""
    for n, frame in enumerate(video_frames(path)):
        yield SourceItem(f"{path}#frame={n}", f"{folder}/{n:06d}.jpg", lambda f=frame: f, index=next(counter),
                         ready=True, frame=n)


def require_av(path: Path) -> Any:
    """PyAV, or an :class:`~zoo_core.errors.InputError` naming the video and the package to install."""
    try:
        import av
    except ImportError:
        raise InputError(f"{path} is a video; reading video needs PyAV, which is not installed: pip install av "
                         "(the zoo[video] extra; torchvision no longer decodes video), or extract its frames to image "
                         "files") from None
    return av


def video_frames(path: Path) -> Iterator[Image.Image]:
    """The frames of a video file as RGB PIL images, in order, decoded one at a time."""
    av = require_av(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable video ({exc}); the file is damaged or not a video", path) from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: holds no video stream", path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_image()
                n += 1
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DataError(f"{path}: video decoding failed after {n} frame(s) ({exc}); the file is damaged or "
                            "cut short", path) from None


# ---- in-memory images --------------------------------------------------------------------------
def _tensor_items(x: torch.Tensor, counter: Iterator[int], channels: int, *, top: bool) -> Iterator[SourceItem]:
    if top and x.dim() == 4:  # a batch given on its own: checked once, not per image
        from .data.images import image_tensor

        checked, note = image_tensor(x, "the input batch", channels)
        if note:
            from .data.images import warn_range_notes

            warn_range_notes([note])
        for row in checked.unbind(0):
            i = next(counter)
            yield SourceItem(f"<tensor {i}>", f"image_{i:06d}.png", lambda r=row: r, index=i, ready=True)
        return
    i = next(counter)
    yield SourceItem(f"<tensor {i}>", f"image_{i:06d}.png", lambda: x, index=i)


def _array_items(arr: np.ndarray, counter: Iterator[int], bgr: bool) -> Iterator[SourceItem]:
    rows = list(arr) if arr.ndim == 4 else [arr]
    for row in rows:
        i = next(counter)
        uint8 = row.dtype == np.uint8
        yield SourceItem(f"<array {i}>", f"image_{i:06d}.png", lambda r=row, n=i: array_image(r, f"input {n}", bgr),
                         index=i, ready=uint8)


def array_image(arr: np.ndarray, what: str, bgr: bool = False) -> Image.Image | torch.Tensor:
    """A channels-last numpy image as the zoo reads it: ``uint8`` becomes an RGB PIL image (RGBA
    composited on black, grey repeated; a 1-channel model gets it back as grey); other dtypes become a
    ``(C, H, W)`` tensor that :func:`~zoo_core.data.images.image_tensor` then checks (floats in [0, 1],
    integers 0..255). ``bgr``: the channels are OpenCV's blue, green, red order."""
    desc = f"{what} (numpy array of shape {arr.shape}, dtype {arr.dtype})"
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4):
        if arr.shape[0] in (1, 3, 4):
            raise InputError(f"{desc}: looks like (C, H, W); numpy images are read channels last, (H, W, C), as "
                             "PIL and OpenCV give them: pass arr.transpose(1, 2, 0), or torch.from_numpy(arr) "
                             "for a (C, H, W) image")
        raise InputError(f"{desc}: {arr.shape[-1]} channels; expected (H, W) grey or (H, W, C) with 1, 3 (RGB) "
                         "or 4 (RGBA) channels")
    if arr.ndim not in (2, 3):
        raise InputError(f"{desc}: expected an (H, W) or (H, W, C) image, or a (B, H, W, C) batch")
    if arr.dtype.kind not in "uif":
        raise InputError(f"{desc}: not an image dtype; pass uint8 values in 0..255 or floats in [0, 1]")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if bgr and arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][:arr.shape[-1]]]
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.uint8:
        return to_rgb(Image.fromarray(arr))
    try:
        t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("=")))
    except TypeError as exc:  # a dtype torch has no tensor for (uint32 on older torch)
        raise InputError(f"{desc}: {exc}; pass uint8 values in 0..255 or floats in [0, 1]") from None
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)
