"""Reading segmentation data: ``images/`` + ``masks/`` folders, masks checked on the CPU, joint transforms.

Layout: ``root/{train,val}/images/<stem>.<ext>`` with ``root/{train,val}/masks/<stem>.png`` (a
root without split folders holds ``images/`` and ``masks/`` directly), or an explicit
``(images_dir, masks_dir)`` pair. A mask is a single-channel PNG of class indices (mode ``L``,
``P``, ``1``, or 16-bit ``I;16``/``I`` for more than 255 classes: its values are kept exactly, read
as int32); 255 means "ignore" at every bit depth, so with more than 255 classes index 255 is still
ignore and never a class (leave class 255 unused). An optional ``root/classes.txt`` (one name a
line, index order) names the classes.

Masks must be stored losslessly: a JPEG mask (``.jpg``/``.jpeg``/``.jpe``/``.jfif``, or any file
whose content is JPEG, JPEG 2000, lossy WebP, or a JPEG-compressed TIFF) has its labels changed by
the compression around every edge, so it is refused naming the file (save masks as PNG).

Every mask is checked when it is read, in the data-loading worker, before anything reaches a GPU:
a mask whose size differs from its image, an RGB colour mask (unless a ``palette`` mapping colours to
indices was given), or a value >= ``num_classes`` other than 255 raises :class:`DataError` naming
the file and the fix. Unreadable *images* are skipped with a warning in training and fail in
evaluation (:mod:`zoo_core.data.robust`); a bad *mask* always fails, since it means the labels are wrong.

Geometry is applied jointly to image and mask with ``torchvision.transforms.v2`` on
``tv_tensors.Mask``, which always resizes masks with nearest interpolation, so the set of mask
values never changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import tv_tensors
from torchvision.transforms import v2

from zoo_core.data.images import is_image_file, load_image
from zoo_core.data.robust import SkipTracker, load_or_skip
from zoo_core.errors import DataError, warn
from zoo_core.model import Preprocess

from .transforms import interpolation_mode, target_size, to_float_normalized

IGNORE_INDEX = 255
CLASSES_FILE = "classes.txt"
INDEX_MODES = ("L", "P", "1", "I", "I;16", "I;16L", "I;16B")
#: file names of a lossy format: refused as masks before anything is read
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif")
#: PIL formats that are always (or usually) lossy; WebP and TIFF are checked per file
LOSSY_FORMATS = ("JPEG", "MPO", "JPEG2000")
#: TIFF compressions (PIL's names) that are lossy
LOSSY_TIFF = ("jpeg", "tiff_jpeg", "webp", "jpeg2000")


def find_folders(source: Any, split: str) -> tuple[Path, Path]:
    """``(images_dir, masks_dir)`` for ``source`` (a root, a split folder, or an explicit pair)."""
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise DataError(f"a segmentation source pair must be (images_dir, masks_dir), got {len(source)} items")
        images, masks = (Path(p).expanduser() for p in source)
    else:
        root = Path(source).expanduser()
        base = root / split if (root / split / "images").is_dir() else root
        images, masks = base / "images", base / "masks"
        if not images.is_dir():
            raise DataError(f"{root}: no images/ folder (looked for {root / split / 'images'} and {root / 'images'}). "
                            "Segmentation data is <root>/{train,val}/images/ + masks/ with the same file stems", root)
    for folder, what in ((images, "images"), (masks, "masks")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {what} folder not found; segmentation data needs images/ and masks/ "
                            "side by side (same file stems)", folder)
    return images, masks


#: suffixes a mask's stem may carry beyond its image's (Cityscapes: ``<x>_gtFine_labelIds.png`` for
#: ``<x>_leftImg8bit.png``), train ids preferred; and the one an image's stem may carry
MASK_SUFFIXES = ("_gtFine_labelTrainIds", "_labelTrainIds", "_gtFine_labelIds", "_labelIds")
IMAGE_SUFFIXES = ("_leftImg8bit",)


def _key(stem: str, suffixes: Sequence[str]) -> str:
    return next((stem[: -len(s)] for s in suffixes if stem.endswith(s)), stem)


def pair_files(images_dir: Path, masks_dir: Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` pairs matched by file stem (Cityscapes' ``_leftImg8bit``/``_labelIds`` suffixes
    aside: :data:`MASK_SUFFIXES`); an image without a mask is a :class:`DataError`, a mask without an
    image a warning naming it."""
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and is_image_file(p))
    if not images:
        raise DataError(f"{images_dir}: no image files", images_dir)
    masks: dict[str, Path] = {}
    rank = {s: k for k, s in enumerate(MASK_SUFFIXES)}
    for p in sorted(masks_dir.iterdir()):
        key = _key(p.stem, MASK_SUFFIXES)
        if not (p.is_file() and is_image_file(p)):
            continue
        old = masks.get(key)
        if old is None or (p.suffix.lower() == ".png" and (old.suffix.lower() != ".png" or rank.get(
                p.stem[len(key):], 9) < rank.get(old.stem[len(key):], 9))):
            masks[key] = p
    lossy = [p for p in masks.values() if p.suffix.lower() in LOSSY_EXTENSIONS]
    if lossy:  # before anything is read: every label near an edge of such a mask may have changed
        names = ", ".join(str(p) for p in lossy[:3]) + (f" and {len(lossy) - 3} more" if len(lossy) > 3 else "")
        raise DataError(f"{len(lossy)} mask(s) are JPEG files: {names}. JPEG is lossy: it changes class indices "
                        "around every edge. Save the masks as PNG (from the original label arrays, not from the "
                        "JPEGs)", lossy[0])
    missing = [p for p in images if _key(p.stem, IMAGE_SUFFIXES) not in masks]
    if missing:
        names = ", ".join(str(p) for p in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataError(f"{len(missing)} image(s) have no mask: {names}. Every image needs a mask with the same "
                        f"stem in {masks_dir} (e.g. {missing[0].stem}.png); add it or remove the image", missing[0])
    stems = {_key(p.stem, IMAGE_SUFFIXES) for p in images}
    orphans = [p.name for key, p in masks.items() if key not in stems]
    if orphans:  # harmless for training, but usually a renamed or deleted image the user meant to keep
        shown = ", ".join(orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
        warn(f"{masks_dir}: {len(orphans)} mask(s) match no image in {images_dir} and are ignored: {shown}")
    return [(p, masks[_key(p.stem, IMAGE_SUFFIXES)]) for p in images]


def read_class_names(images_dir: Path) -> list[str] | None:
    """Names from ``classes.txt`` in the split folder or the root above it, if present."""
    for folder in (images_dir.parent, images_dir.parent.parent):
        f = folder / CLASSES_FILE
        if f.is_file():
            return [line.strip() for line in f.read_text().splitlines() if line.strip()]
    return None


def read_mask(path: Path, *, image_size: tuple[int, int] | None, num_classes: int,
              palette: Sequence[Sequence[int]] | None = None, image_path: Path | None = None,
              value_map: Mapping[int, int] | None = None) -> np.ndarray:
    """A mask file as an ``(H, W)`` array of class indices, checked; :class:`DataError` names the file.

    The array is uint8 when every value fits (8-bit masks, and 16-bit ones with values <= 255), else
    int32 (16-bit masks of more than 255 classes keep their values exactly). ``image_size`` is the
    image's PIL ``(W, H)``; ``palette[i]`` is the RGB colour of class ``i`` for colour masks
    (VOC-style colour PNGs saved as RGB); ``value_map`` maps stored values to classes (Cityscapes'
    label ids to train ids: :func:`mask_array`). A lossy file (JPEG content, lossy WebP, JPEG-compressed
    TIFF) is refused whatever its name.
    """
    return mask_array(open_mask(path), path, image_size=image_size, num_classes=num_classes, palette=palette,
                      image_path=image_path, value_map=value_map)


def open_mask(path: Path) -> Image.Image:
    """A mask file opened and decoded (EXIF orientation applied); a lossy or unreadable file is a :class:`DataError`."""
    try:
        with Image.open(path) as im:
            lossy = _lossy_format(im, path)
            if lossy:
                raise DataError(f"{path}: the mask is stored as {lossy}; lossy compression changes class indices "
                                "around every edge. Save the masks as PNG (from the original label arrays)", path)
            im.load()
            im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: unreadable mask ({exc}); replace it with a single-channel PNG of class indices",
                        path) from exc
    return im


def mask_array(im: Image.Image, path: Path | str, *, image_size: tuple[int, int] | None, num_classes: int,
               palette: Sequence[Sequence[int]] | None = None, image_path: Path | str | None = None,
               value_map: Mapping[int, int] | None = None) -> np.ndarray:
    """A decoded mask (``path`` names it in errors) as checked class indices (see :func:`read_mask`).

    ``value_map``: stored value -> class index (or 255, ignore); a stored value it lacks is an error. A
    value that is no class names the first pixel holding it (row, column)."""
    if image_size is not None and im.size != tuple(image_size):
        raise DataError(f"{path}: mask is {im.size[0]}x{im.size[1]} but its image {image_path or ''} is "
                        f"{image_size[0]}x{image_size[1]} (W x H); a mask must have its image's size. Regenerate it "
                        "(resizing a mask needs nearest interpolation)", path)
    if im.mode in INDEX_MODES:
        arr = np.asarray(im)
    elif im.mode in ("RGB", "RGBA", "LA"):
        arr = _from_colour(path, np.asarray(im.convert("RGB")), palette)
    else:
        raise DataError(f"{path}: mask mode {im.mode!r} is not a class-index image; save it as a single-channel "
                        "(L or P) PNG of class indices", path)
    arr = arr.astype(np.int64)
    if value_map is not None:
        arr = _map_values(arr, value_map, path)
    bad = (arr != IGNORE_INDEX) & ((arr < 0) | (arr >= num_classes))
    if bad.any():
        values = sorted(int(v) for v in np.unique(arr[bad]))[:8]
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{path}: mask value(s) {values} are not classes of a {num_classes}-class model (valid: "
                        f"0..{num_classes - 1}, and {IGNORE_INDEX} = ignore; the first at row {row}, column {col}). "
                        "Load the model with a larger num_classes=, or remap those values in the mask "
                        "(task option label_map={stored: class})", path)
    return arr.astype(np.uint8 if arr.size == 0 or arr.max() <= 255 else np.int32)


def _map_values(arr: np.ndarray, value_map: Mapping[int, int], path: Path | str) -> np.ndarray:
    """``arr``'s stored values through ``value_map`` (a lookup table); unmapped values are an error."""
    size = max(int(arr.max(initial=0)), max(value_map)) + 1
    table = np.full(size, -1, dtype=np.int64)
    for src, dst in value_map.items():
        table[int(src)] = int(dst)
    out = table[np.clip(arr, 0, size - 1)]
    bad = (out < 0) | (arr < 0)
    if bad.any():
        values = sorted(int(v) for v in np.unique(arr[bad]))[:8]
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{path}: mask value(s) {values} are not in the label map (it maps {sorted(value_map)[:12]}"
                        f"{' ...' if len(value_map) > 12 else ''}; the first at row {row}, column {col}); add them "
                        "to the task option label_map (to a class, or 255 to ignore them)", path)
    return out


def _lossy_format(im: Image.Image, path: Path) -> str | None:
    """A description of ``im``'s lossy storage (``"JPEG"``, ``"lossy WebP"``...), or None when lossless."""
    fmt = str(im.format or "")
    if fmt in LOSSY_FORMATS:
        return fmt.replace("MPO", "JPEG (MPO)")
    if fmt == "TIFF" and str(im.info.get("compression", "")).lower() in LOSSY_TIFF:
        return f"a {im.info['compression']}-compressed TIFF"
    if fmt == "WEBP":
        kind = _webp_kind(path)
        return {"lossless": None, "lossy": "lossy WebP"}.get(kind, "an animated WebP (whose frames may be lossy)")
    return None


def _webp_kind(path: Path) -> str:
    """``"lossless"``, ``"lossy"`` or ``"animated"``, from the RIFF chunks of a WebP file's header."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    pos = 12  # after "RIFF" <size> "WEBP"
    while pos + 8 <= len(data):
        fourcc = data[pos:pos + 4]
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc == b"VP8L":
            return "lossless"
        if fourcc == b"VP8 ":
            return "lossy"
        if fourcc in (b"ANIM", b"ANMF"):
            return "animated"
        pos += 8 + size + (size & 1)
    return "lossy"  # no image chunk in the first 64 KiB (huge metadata): do not trust it


def _from_colour(path: Path, rgb: np.ndarray, palette: Sequence[Sequence[int]] | None) -> np.ndarray:
    """An RGB mask -> indices: grey (R == G == B) is read as indices; colours need an explicit ``palette``."""
    if palette is None:
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0]
        colours = np.unique(rgb.reshape(-1, 3), axis=0)[:4].tolist()
        raise DataError(f"{path}: an RGB colour mask (colours {colours} ...) where class indices are expected. "
                        "Save masks as single-channel PNGs of class indices, or pass the task option "
                        "palette=[[r, g, b], ...] (the colour of class 0, 1, ...)", path)
    codes = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]
    table = {int(r) << 16 | int(g) << 8 | int(b): i for i, (r, g, b) in enumerate(palette)}
    out = np.full(codes.shape, -1, dtype=np.int64)
    for code, index in table.items():
        out[codes == code] = index
    if (out < 0).any():
        unknown = np.unique(rgb[out < 0].reshape(-1, 3), axis=0)[:4].tolist()
        raise DataError(f"{path}: colour(s) {unknown} are not in the palette; add them (or 255 for ignore)", path)
    return out


def joint_transform(pre: Preprocess, size: int | Sequence[int] | None = None, *, train: bool,
                    scale: tuple[float, float] = (0.5, 1.0), hflip: float = 0.5) -> v2.Compose:
    """Image + mask pipeline: training random-resized crop + flip, evaluation a plain resize; then normalise.

    Masks (``tv_tensors.Mask``) are always resized with nearest interpolation by torchvision.
    """
    h, w = target_size(pre, size)
    mode = interpolation_mode(pre.interpolation)
    if train:
        steps: list[v2.Transform] = [v2.RandomResizedCrop((h, w), scale=tuple(scale), interpolation=mode,
                                                          antialias=True)]
        if hflip > 0:
            steps.append(v2.RandomHorizontalFlip(p=hflip))
    else:
        steps = [v2.Resize((h, w), interpolation=mode, antialias=True)]
    return v2.Compose([*steps, *to_float_normalized(pre)[1:]])


class MaskFolderDataset(torch.utils.data.Dataset):
    """``(image (3, H, W) normalised float, mask (H, W) int64, source path)`` samples."""

    def __init__(self, pairs: list[tuple[Path, Path]], transform: v2.Compose, *, num_classes: int,
                 class_names: Sequence[str], train: bool, palette: Sequence[Sequence[int]] | None = None,
                 value_map: Mapping[int, int] | None = None) -> None:
        self.pairs = pairs
        self.transform = transform
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.palette = palette
        self.value_map = value_map
        self.skips = SkipTracker(len(pairs), train=train)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load_image(self, j: int) -> tuple[int, Image.Image]:
        return j, load_image(self.pairs[j][0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        j, img = load_or_skip(index, len(self.pairs), self._load_image, self.skips)
        image_path, mask_path = self.pairs[j]
        arr = read_mask(mask_path, image_size=img.size, num_classes=self.num_classes, palette=self.palette,
                        image_path=image_path, value_map=self.value_map)
        return mask_sample(v2.functional.pil_to_tensor(img), arr, self.transform, str(image_path))


def mask_sample(image: torch.Tensor, arr: np.ndarray, transform: v2.Compose, source: str
                ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A segmentation sample: ``transform`` applied jointly to an image ``(C, H, W)`` (uint8, or float in
    [0, 1]) and its checked mask array ``(H, W)``."""
    out_image, mask = transform(tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(arr)[None]))
    return out_image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)[0].long(), source
