"""The ``keypoints`` task (aliases ``kp``, ``keypoint``): COCO keypoints json, the network's own losses, COCO OKS AP.

Contract with keypoint networks (``model.net``), detection's (:mod:`.detection`) plus: training
targets hold ``keypoints`` ``(N, K, 3)`` (x, y in the image's pixels, visibility 0/1/2); in eval mode
each image's dict also holds ``keypoints`` ``(N, K, 3)`` (x, y in that input image's pixels) and,
optionally, ``keypoints_scores`` ``(N, K)``; the network names its points in ``net.keypoint_names``
(and may list ``net.skeleton``, 0-based index pairs), so predictions, drawings and metrics name them.
Keypoint R-CNN (``zoo_torchvision``) is such a network.

Data, checks and the flip: :mod:`.kp_data`; metrics: :mod:`.kp_metrics`; the demo data: :mod:`.kp_synth`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from zoo_core.demo import DemoRecipe
from zoo_core.errors import DataError, OptionError, ZooError
from zoo_core.task import Keypoints, Metrics

from .classification import _placeholder_names
from .det_data import category_names, coco_categories
from .detection import DetectionTask
from .hooks import HOOK_CHECKS, HOOK_DEFAULTS, LOSS_CHECK
from .kp_data import (COCO_KEYPOINT_NAMES, COCO_SKELETON, KeypointDataset, KeypointLayout, check_pairs, keypoint_json,
                      layout_of, read_keypoints)
from .kp_metrics import KeypointMetrics, check_sigmas
from .option_checks import choice

if TYPE_CHECKING:
    from zoo_core.model import ZooModel


def _pairs_or_none(key: str, value: Any) -> None:
    if value is not None:
        check_pairs(value, 10 ** 6, f"task option {key}")  # indices checked against K when the data is read


KEYPOINT_OPTIONS: dict[str, Any] = {"hflip": 0.5, "flip_pairs": None, "filter_empty": False, "score_threshold": 0.0,
                                    "coco_backend": "auto", "oks_sigmas": None, "loss": None, **HOOK_DEFAULTS}
KEYPOINT_CHECKS = {"coco_backend": choice("auto", "faster", "pycocotools"), "loss": LOSS_CHECK,
                   "flip_pairs": _pairs_or_none, "oks_sigmas": check_sigmas, **HOOK_CHECKS}


def model_layout(model: "ZooModel") -> KeypointLayout:
    """The keypoints ``model`` predicts: its network's ``keypoint_names`` and ``skeleton`` (see the module docstring;
    COCO's skeleton for COCO's 17 person keypoints when the network lists none)."""
    names = getattr(model.net, "keypoint_names", None)
    if not names:
        raise ZooError(f"{model.config.get('model', type(model.net).__name__)}: its network has no keypoint_names, "
                       "which the keypoints task needs to name its points (set net.keypoint_names = [...])")
    names = tuple(str(n) for n in names)
    skeleton = tuple((int(a), int(b)) for a, b in getattr(model.net, "skeleton", None) or ())
    return KeypointLayout(names, skeleton or (COCO_SKELETON if names == COCO_KEYPOINT_NAMES else ()))


def _placeholder_points(names: Sequence[str]) -> bool:
    return list(names) == [f"kp_{i}" for i in range(len(names))]


class KeypointsTask(DetectionTask):
    """Keypoint detection on COCO keypoints data, scored by pycocotools' COCOeval (OKS).

    Options: ``hflip`` (training flip probability: boxes and points mirror, left/right pairs swap),
    ``flip_pairs`` (the pairs a flip swaps, 0-based ``[[i, j], ...]``; default: from the keypoint names'
    ``left_``/``right_`` parts; ``[]``: no point has a twin, mirror them in place), ``filter_empty``,
    ``score_threshold``, ``coco_backend`` (the box AP's evaluator), ``loss`` and ``metrics`` as detection's;
    ``oks_sigmas`` (the OKS sigma of every point, a number or one per point; :mod:`.kp_metrics`).
    Detection's mosaic, crops and scale jitter are not offered: they would cut points out of their boxes.
    """

    name = "keypoints"
    default_metric = "map"
    option_defaults = KEYPOINT_OPTIONS
    option_checks = KEYPOINT_CHECKS
    option_rules = ()
    data_options = ()
    data_formats = ("coco",)

    def demo(self) -> DemoRecipe:
        """The ``zoo demo`` recipe (see :mod:`zoo_tasks.demos`)."""
        from .demos import KEYPOINTS

        return KEYPOINTS

    # ---- data -----------------------------------------------------------------------------------
    def read_dataset(self, source: Any, *, split: str, train: bool, model: "ZooModel",
                     image_size: int | tuple[int, int] | None = None,
                     class_names: Sequence[str] | None = None) -> KeypointDataset:
        """COCO keypoints data from ``source`` (a folder with annotations.json, a root with train/ and val/ or
        COCO's ``annotations/person_keypoints_*.json``, a .json path, or an (images_dir, json) pair). Its
        keypoints must be the model's (a count or names that differ are a DataError saying what to load)."""
        if class_names is None and not _placeholder_names(model.class_names):
            class_names = model.class_names
        opts = self.options(model)
        data = read_keypoints(source, split, class_names=class_names, train=train,
                              filter_empty=bool(opts["filter_empty"]) and train)
        if len(data.index.class_names) > model.num_classes:
            raise DataError(f"{data.json_path} has {len(data.index.class_names)} categories but the model predicts "
                            f"{model.num_classes}; load it with num_classes={len(data.index.class_names)} (or "
                            "class_names=[...]) for a matching head", data.json_path)
        self._check_layout(data.layout, model_layout(model), data.json_path)
        hflip = self.unit_value("hflip", opts["hflip"]) if train else 0.0
        pairs = self._flip_pairs(data.layout, opts, hflip, data.json_path)
        return KeypointDataset(data, train=train, hflip=hflip, pairs=pairs)

    @staticmethod
    def _check_layout(data: KeypointLayout, own: KeypointLayout, source: Path) -> None:
        if data.names == own.names or (len(data.names) == len(own.names) and _placeholder_points(own.names)):
            return
        fix = (f"load the model with keypoint_names={list(data.names)!r}" +
               (f", skeleton={[list(p) for p in data.skeleton]!r}" if data.skeleton else "") +
               " (zoo train --option keypoint_names=...), a new keypoint head for this data")
        what = (f"{len(data.names)} keypoints but the model predicts {len(own.names)}"
                if len(data.names) != len(own.names) else "keypoints named or ordered unlike the model's")
        raise DataError(f"{source}: its categories list {what} ({list(data.names)[:8]} vs the model's "
                        f"{list(own.names)[:8]}); {fix}", source)

    @staticmethod
    def _flip_pairs(layout: KeypointLayout, opts: dict[str, Any], hflip: float, source: Path) -> list[tuple[int, int]]:
        """The pairs a training flip swaps (option ``flip_pairs``, else from the names); a flip with none known is
        refused: a mirrored left point would be trained as a left point."""
        k = len(layout.names)
        if opts["flip_pairs"] is not None:
            return check_pairs(opts["flip_pairs"], k, "task option flip_pairs")
        pairs = layout.flip_pairs
        if hflip and not pairs:
            raise OptionError(f"hflip={hflip:g}: no left/right pair among the keypoints {list(layout.names)[:8]} of "
                              f"{source} (names like left_x/right_x are paired), so a flip cannot swap sides. Set "
                              "task option flip_pairs=[[i, j], ...] (0-based), flip_pairs=[] if no point has a "
                              "mirror twin, or hflip=0")
        return pairs

    def adapt_dataset(self, dataset: torch.utils.data.Dataset, *, model: "ZooModel", train: bool,
                      image_size: int | tuple[int, int] | None = None,
                      class_names: Sequence[str] | None = None) -> torch.utils.data.Dataset:
        """This task's own datasets pass unchanged; another Dataset object is refused: pass the COCO data."""
        if isinstance(dataset, KeypointDataset):
            return dataset
        raise DataError(f"the keypoints task reads COCO keypoints json; a {type(dataset).__name__} object cannot be "
                        "adapted (its keypoints have no agreed form). Pass the COCO folder or (images_dir, json)")

    def check_data(self, source: Any, *, split: str | None = None, format: str | None = None) -> Any:
        """No ``zoo data check`` for keypoints yet (reading the data with a model checks every point)."""
        return None

    def convert_data(self, source: Any, out_dir: Path, *, src_format: str, dst_format: str) -> Path:
        """Refused: detection's converters write boxes only, so the keypoints would be lost."""
        raise DataError(f"keypoint data is COCO json only; converting {src_format} -> {dst_format} would drop the "
                        "keypoints (use `zoo data convert --task det` for the boxes alone)")

    def source_class_names(self, source: Any, *, split: str) -> list[str]:
        """The category names of ``split``'s keypoints json, in label order (ascending category id)."""
        return category_names(keypoint_json(source, split)[0])

    def source_model_options(self, source: Any, *, split: str) -> dict[str, Any]:
        """``keypoint_names`` and ``skeleton`` of ``split``'s categories: what a keypoint head for this data predicts."""
        json_path = keypoint_json(source, split)[0]
        layout = layout_of(coco_categories(json_path), json_path)
        return {"keypoint_names": list(layout.names), "skeleton": [list(pair) for pair in layout.skeleton]}

    # ---- metrics and inference -------------------------------------------------------------------
    def new_metrics(self, class_names: Sequence[str]) -> Metrics:
        return KeypointMetrics(class_names, sigmas=self.defaults["oks_sigmas"],
                               backend=str(self.defaults["coco_backend"]))

    def base_metrics(self, model: "ZooModel", class_names: Sequence[str]) -> Metrics:
        """OKS AP with the model's keypoint names, skeleton and ``oks_sigmas`` option."""
        layout = model_layout(model)
        return KeypointMetrics(class_names, keypoint_names=layout.names, skeleton=layout.skeleton,
                               sigmas=self.options(model)["oks_sigmas"], backend=str(self.defaults["coco_backend"]))

    def predict(self, model: "ZooModel", images: list[Any], sources: list[str], **options: Any) -> list[Keypoints]:
        """Boxes and keypoints in each input image's pixels; ``keypoints[..., 2]`` is the network's score of each
        point (Keypoint R-CNN: its heatmap's peak logit, higher is surer). ``score_threshold=`` (or ``conf=``),
        ``iou=``, ``max_det=`` and ``classes=`` filter the objects, points kept in step (:mod:`.predict_filters`)."""
        layout = model_layout(model)
        keep, _, outputs = self.filtered_forward(model, images, options)
        result = []
        for src, out in zip(sources, outputs):
            idx = keep.indices(out["boxes"], out["scores"], out["labels"])
            points = out["keypoints"][idx].detach().float().clone()
            if "keypoints_scores" in out:
                points[..., 2] = out["keypoints_scores"][idx].float()
            labels = out["labels"][idx].cpu()
            result.append(Keypoints(source=src, boxes=out["boxes"][idx].cpu(), scores=out["scores"][idx].cpu(),
                                    labels=labels, names=[model.class_names[int(i)] for i in labels],
                                    keypoints=points.cpu(), keypoint_names=list(layout.names),
                                    skeleton=list(layout.skeleton)))
        return result

    def predictions_plot(self, model: "ZooModel", dataset: torch.utils.data.Dataset, path: Path) -> Path:
        """A few images with their predicted boxes, points and skeletons."""
        from .det_plots import annotated_sheet

        return annotated_sheet(model, dataset, path)

    def example_samples(self, model: "ZooModel", *, n: int = 2, seed: int = 0) -> list[Any]:
        """Detection's noise samples with the model's K keypoints (visible) inside each box."""
        k = len(model_layout(model).names)
        g = torch.Generator().manual_seed(seed + 1)
        samples = []
        for image, target, meta in super().example_samples(model, n=n, seed=seed):
            x0, y0, x1, y1 = target["boxes"].unbind(-1)
            u = torch.rand(len(target["boxes"]), k, 2, generator=g)
            points = torch.stack([x0[:, None] + u[..., 0] * (x1 - x0)[:, None], y0[:, None] + u[..., 1] *
                                  (y1 - y0)[:, None], torch.full((len(u), k), 2.0)], -1)
            samples.append((image, {**target, "keypoints": points}, {**meta, "gt_keypoints": points.clone()}))
        return samples
