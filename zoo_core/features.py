"""What a backbone's maps are and what a head needs of them: the one place pairings are decided.

:class:`FeatureInfo` states the channels and stride of each map a backbone returns;
:class:`HeadRequirements` is what a head declares (``HeadSpec.requires``); :func:`fit` decides
whether maps described by a FeatureInfo can feed a head, directly or through the simple feature
pyramid (:class:`zoo_core.backbone.SimpleFeaturePyramid`) the zoo puts in front of a single map.
``zoo.build``, ``zoo compat``, ``zoo info HEAD`` and the conformance suite all ask :func:`fit`, so
they cannot disagree. Nothing here imports torch: ``zoo info`` reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from .errors import PluginError

#: what the simple feature pyramid makes of one map at stride ``s``: maps at ``s / k`` for each ``k``
PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and stride of every output map, shallowest first: ``levels = ((C, stride), ...)``.

    ``channels()``/``reduction()`` return the lists (or one entry with an index), as timm's
    ``feature_info`` does.
    """

    levels: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        levels = tuple((int(c), int(r)) for c, r in self.levels)
        if not levels:
            raise ValueError("FeatureInfo needs at least one level")
        if any(c < 1 or r < 1 for c, r in levels):
            raise ValueError(f"FeatureInfo levels must have positive channels and strides, got {levels}")
        object.__setattr__(self, "levels", levels)

    @classmethod
    def of(cls, channels: Sequence[int], reductions: Sequence[int]) -> "FeatureInfo":
        """Build from parallel lists of channels and strides."""
        if len(channels) != len(reductions):
            raise ValueError(f"{len(channels)} channels but {len(reductions)} reductions")
        return cls(tuple(zip(channels, reductions)))

    def channels(self, idx: int | None = None) -> list[int] | int:
        """Channels of every level (or of level ``idx``)."""
        out = [c for c, _ in self.levels]
        return out if idx is None else out[idx]

    def reduction(self, idx: int | None = None) -> list[int] | int:
        """Stride of every level relative to the input (or of level ``idx``)."""
        out = [r for _, r in self.levels]
        return out if idx is None else out[idx]

    def __len__(self) -> int:
        return len(self.levels)

    def __str__(self) -> str:
        return ", ".join(f"{c}ch@/{r}" for c, r in self.levels)

    def to_dict(self) -> dict[str, list[int]]:
        return {"channels": self.channels(), "reduction": self.reduction()}  # type: ignore[dict-item]


@dataclass(frozen=True)
class HeadRequirements:
    """What a head needs from the backbone's maps; a ``HeadSpec.requires`` dict holds these keys.

    ``min_levels``: how many maps at least, counting only maps with ``min_stride`` <= stride <=
    ``max_stride`` when those are set; ``strides``: strides that must all be present;
    ``single_level_ok``: False means the head needs a pyramid (2+ maps in the stride range: the same as
    ``min_levels >= 2``). A backbone with one map whose stride is divisible by 4 (a ViT/16) that does
    not meet them gets a simple feature pyramid in front of the head when the pyramid's maps would
    (:func:`fit`).
    """

    min_levels: int = 1
    strides: tuple[int, ...] = ()
    min_stride: int | None = None
    max_stride: int | None = None
    single_level_ok: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "HeadRequirements":
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise PluginError(f"unknown head requirement(s) {sorted(unknown)}; allowed: "
                              f"{sorted(cls.__dataclass_fields__)}")
        if "strides" in data:
            data["strides"] = tuple(int(s) for s in data["strides"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stride_range(self) -> str:
        """`` with stride in [4, 16]`` (empty when the head takes any stride)."""
        if self.min_stride is None and self.max_stride is None:
            return ""
        return f" with stride in [{self.min_stride or 1}, {self.max_stride or 'any'}]"

    def describe(self) -> str:
        """The requirements in words (what ``zoo info HEAD`` prints)."""
        levels = max(self.min_levels, 1 if self.single_level_ok else 2)
        text = f"at least {levels} feature map(s){self.stride_range()}"
        if not self.single_level_ok:
            text += " (a pyramid: one map is not enough)"
        if self.strides:
            text += f", including maps at strides {list(self.strides)}"
        return text


def usable_levels(info: FeatureInfo, req: HeadRequirements) -> list[int]:
    """Indices of the maps whose stride lies in the head's ``[min_stride, max_stride]`` range."""
    return [i for i, r in enumerate(info.reduction())  # type: ignore[arg-type]
            if (req.min_stride is None or r >= req.min_stride) and (req.max_stride is None or r <= req.max_stride)]


def why_incompatible(info: FeatureInfo, req: HeadRequirements) -> str | None:
    """None when ``info`` meets ``req`` as it is; otherwise the reason, in words a user can act on."""
    strides = info.reduction()
    usable = usable_levels(info, req)
    rng = req.stride_range()
    if len(usable) < req.min_levels:
        return (f"the head needs at least {req.min_levels} feature map(s){rng}; the backbone gives "
                f"{len(usable)} (strides {strides})")
    if not req.single_level_ok and len(usable) < 2:
        return f"the head needs a feature pyramid (2+ maps{rng}); the backbone gives strides {strides}"
    missing = [s for s in req.strides if s not in strides]
    if missing:
        return f"the head needs maps at strides {list(req.strides)}; the backbone lacks {missing} (it has {strides})"
    return None


def pyramid_why_not(info: FeatureInfo) -> str | None:
    """Why the simple feature pyramid cannot expand ``info`` (None when it can)."""
    if len(info) != 1:
        return f"the simple feature pyramid takes one map; the backbone gives {len(info)}"
    if info.reduction(0) % 4 or info.channels(0) < 4:  # type: ignore[operator]
        return (f"the simple feature pyramid needs a map whose stride is divisible by 4 (a ViT with "
                f"patch 16); the backbone's single map has stride {info.reduction(0)}")
    return None


def pyramid_info(info: FeatureInfo, channels: int | None = None) -> FeatureInfo:
    """The maps the simple feature pyramid makes of ``info``'s single map (``channels`` each)."""
    c, s = info.levels[0]
    return FeatureInfo(tuple((channels or c, int(s / k)) for k in PYRAMID_SCALES))


@dataclass(frozen=True)
class Fit:
    """Whether maps can feed a head: ``reason`` is None when they can; ``adapter`` when they can only
    through a simple feature pyramid (whose strides are ``pyramid``)."""

    reason: str | None = None
    adapter: bool = False
    pyramid: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None

    def __str__(self) -> str:
        if self.reason is not None:
            return f"no: {self.reason}"
        if self.adapter:
            return (f"fits through a simple feature pyramid (its single map becomes maps at strides "
                    f"{', '.join(map(str, self.pyramid))})")
        return "fits"


def fit(info: FeatureInfo, req: HeadRequirements) -> Fit:
    """Can maps described by ``info`` feed a head needing ``req``: as they are, through the simple
    feature pyramid (one map at a stride divisible by 4), or not (with the reason)."""
    reason = why_incompatible(info, req)
    if reason is None:
        return Fit()
    adapt = pyramid_why_not(info)
    if adapt is None:
        pyramid = pyramid_info(info)
        if why_incompatible(pyramid, req) is None:
            return Fit(adapter=True, pyramid=tuple(pyramid.reduction()))  # type: ignore[arg-type]
    elif len(info) == 1:
        reason += f"; {adapt}"
    return Fit(reason)


#: feature maps of common backbones, for saying what a head accepts without building anything
TYPICAL_BACKBONES: dict[str, FeatureInfo] = {
    "a CNN pyramid (ResNet: strides 2-32)": FeatureInfo.of([64, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
    "a ViT/16 (one map at stride 16)": FeatureInfo.of([384], [16]),
}

