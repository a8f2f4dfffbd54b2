"""Decode and augment classification images on the training device (nvjpeg on CUDA), not in workers.

With the task option ``decode="device"`` the DataLoader workers only read each file's bytes and
draw its augmentation parameters; :meth:`EncodedBatch.to` (which the Trainer and the evaluator call
to move every batch) decodes the whole batch with ``torchvision.io.decode_jpeg(list, device=...)``
(nvjpeg's batched decoder on CUDA, libjpeg-turbo on the CPU), crops and resizes each image, then
flips and normalises the stacked batch at once. A PIL worker decodes ~100-200 ImageNet JPEGs a second
per core; nvjpeg decodes thousands, so 16 cores stop being the limit (issue 7, target 2).

Same results as the PIL pipeline (:mod:`.transforms`): the random-resized-crop box and the flip are
drawn in the worker by the very ``RandomResizedCrop``/``RandomHorizontalFlip`` objects of
:func:`~.transforms.train_transform`, from the same per-sample seeded generator and in the same
order, so a sample gets the same crop either way; the eval geometry is the eval pipeline's own
``Resize``/``CenterCrop``. What differs is the JPEG decoder (libjpeg-turbo's/nvjpeg's IDCT and
chroma upsampling vs PIL's) and the resize running on a tensor instead of a PIL image: a few uint8
levels on some pixels (tests/test_device_decode.py measures it).

Files that are not plain RGB/grayscale JPEGs (PNG, CMYK, EXIF-rotated, no end-of-image marker) are
decoded by PIL in the worker (:func:`zoo_core.data.images.load_image`), so corrupt files raise the
same named :class:`~zoo_core.errors.DataError` there and training skips them as before. A file
that passes those checks and still fails to decode on the device raises a DataError naming it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from zoo_core.data.folders import FolderIndex, ImageFolderDataset
from zoo_core.data.images import load_image
from zoo_core.errors import DataError
from zoo_core.task import Batch

DECODE_MODES = ("pil", "device", "auto")


def use_device_decode(mode: str) -> bool:
    """``decode`` option -> whether to decode on the device (``auto``: only when CUDA is available)."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode={mode!r}: choose one of {', '.join(DECODE_MODES)}")
    return mode == "device" or (mode == "auto" and torch.cuda.is_available())


@dataclass
class EncodedImage:
    """One sample's image as a worker leaves it: JPEG bytes (1-D uint8) or PIL-decoded ``(3, H, W)`` uint8,
    the crop box ``(top, left, height, width)`` and flip drawn for it (training only), and the decoder
    that finishes it (one object per dataset: a collated batch pickles it once)."""

    data: Tensor
    path: str
    decoder: "DeviceDecoder"
    crop: tuple[int, int, int, int] | None = None
    flip: bool = False

    @property
    def encoded(self) -> bool:
        return self.data.dim() == 1


def _plain_jpeg(data: bytes) -> tuple[int, int] | None:
    """(H, W) of an RGB/grayscale JPEG that decode_jpeg reads like PIL does, else None (PIL decodes it)."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or truncated (no end-of-image marker)
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                return None
            if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: let load_image rotate it
                return None
            return img.height, img.width
    except Exception:  # noqa: BLE001 - anything odd goes to PIL, which names the file
        return None


class EncodedFolderDataset(ImageFolderDataset):
    """An image folder whose samples are ``(EncodedImage, label, path)``; see the module docstring.

    ``transform`` is the PIL pipeline's (``train_transform``/``eval_transform``): its random crop and
    flip draw the parameters here, and :class:`DeviceDecoder` applies its geometry on the device.
    """

    def __init__(self, index: FolderIndex, transform: v2.Compose, *, train: bool = False) -> None:
        super().__init__(index, None, train=train)
        self.decoder = DeviceDecoder(transform)

    def _load(self, i: int) -> tuple[Any, int, str]:
        path, label = self.samples[i]
        try:
            raw = path.read_bytes()
        except OSError:
            load_image(path)  # raises the named DataError (missing, unreadable)
            raise
        size = _plain_jpeg(raw)
        if size is None:
            arr = np.asarray(load_image(path), dtype=np.uint8)  # named DataError for corrupt files
            data = torch.from_numpy(arr.copy()).permute(2, 0, 1)
            size = (data.shape[1], data.shape[2])
        else:
            data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        crop, flip = self.decoder.draw(size)
        return EncodedImage(data, str(path), self.decoder, crop, flip), label, str(path)


@dataclass
class DeviceDecoder:
    """Splits a zoo image pipeline into the random draws (in workers) and the device work (in ``.to``)."""

    transform: v2.Compose
    crop: v2.RandomResizedCrop | None = field(init=False, default=None)
    flip: v2.RandomHorizontalFlip | None = field(init=False, default=None)
    geometry: list[Callable[[Tensor], Tensor]] = field(init=False, default_factory=list)
    normalize: v2.Normalize | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        for t in self.transform.transforms:
            if isinstance(t, v2.RandomResizedCrop):
                self.crop = t
            elif isinstance(t, v2.RandomHorizontalFlip):
                self.flip = t
            elif isinstance(t, (v2.Resize, v2.CenterCrop)):
                self.geometry.append(t)
            elif isinstance(t, v2.Normalize):
                self.normalize = t

    def draw(self, size: tuple[int, int]) -> tuple[tuple[int, int, int, int] | None, bool]:
        """The crop box and flip for an image of ``size`` (H, W), drawn as the PIL pipeline draws them."""
        crop = None
        if self.crop is not None:
            p = self.crop.make_params([torch.zeros(()).expand(3, *size)])
            crop = (p["top"], p["left"], p["height"], p["width"])
        flip = bool(torch.rand(1) < self.flip.p) if self.flip is not None else False
        return crop, flip

    def resize(self, img: Tensor, item: EncodedImage) -> Tensor:
        if item.crop is not None and self.crop is not None:
            top, left, h, w = item.crop
            return TF.resized_crop(img, top, left, h, w, list(self.crop.size),
                                   interpolation=self.crop.interpolation, antialias=True)
        for t in self.geometry:
            img = t(img)
        return img

    def __call__(self, items: list[EncodedImage], device: torch.device, *, channels_last: bool = False) -> Tensor:
        """Decode, crop/resize, flip and normalise ``items`` into a ``(B, 3, H, W)`` float batch on ``device``."""
        jpegs = [k for k, it in enumerate(items) if it.encoded]
        images: list[Tensor | None] = [None] * len(items)
        if jpegs:
            for k, img in zip(jpegs, self._decode([items[k] for k in jpegs], device)):
                images[k] = img
        for k, it in enumerate(items):
            if images[k] is None:
                images[k] = it.data.to(device, non_blocking=True)
        # uint8 antialiased resize exists on the CPU only (and matches PIL there); elsewhere use float
        out = [self.resize(img if device.type == "cpu" else img.float(), it) for img, it in zip(images, items)]
        batch = torch.stack([o.float() for o in out])
        flips = torch.tensor([it.flip for it in items], device=device)
        if bool(flips.any()):
            batch = torch.where(flips.view(-1, 1, 1, 1), batch.flip(-1), batch)
        batch = batch.div_(255.0)
        if self.normalize is not None:
            mean = torch.tensor(self.normalize.mean, device=device).view(1, -1, 1, 1)
            std = torch.tensor(self.normalize.std, device=device).view(1, -1, 1, 1)
            batch = batch.sub_(mean).div_(std)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch

    @staticmethod
    def _decode(items: list[EncodedImage], device: torch.device) -> list[Tensor]:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return list(decode_jpeg([it.data for it in items], mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                pass
        out = []
        for it in items:  # find the file that broke the batch
            try:
                out.append(decode_jpeg(it.data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as exc:
                raise DataError(f"{it.path}: unreadable image ({exc}); the file is corrupt or truncated: "
                                "replace or remove it", it.path) from exc
        return out


@dataclass
class EncodedBatch(Batch):
    """A classification batch whose ``inputs`` are :class:`EncodedImage` items; ``to`` decodes them."""

    decoder: DeviceDecoder | None = None

    def to(self, device: torch.device | str, *, channels_last: bool = False, non_blocking: bool = False) -> Batch:
        device = torch.device(device)
        assert self.decoder is not None
        inputs = self.decoder(list(self.inputs), device, channels_last=channels_last)  # type: ignore[arg-type]
        return Batch(inputs, self.targets, self.meta).to(device, non_blocking=non_blocking)
