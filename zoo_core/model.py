"""The model object users hold: an ``nn.Module`` that knows its task, classes and preprocessing.

Plugins' builders return a :class:`BuiltModel` (the raw network plus what the zoo needs to know
about it); :func:`zoo_core.load` wraps it in a :class:`ZooModel`.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from .export import ExportResult
    from .prune import PruneResult
    from .quantize import QuantizeResult
    from .task import Prediction, Task
    from .weights import LoadReport

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: resize filters every image path implements: PIL, torchvision v2 on tensors (which predict, evaluate
#: and device decode use) and on PIL images. PIL's "box" and "hamming" have no tensor kernel.
INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "lanczos")


@contextlib.contextmanager
def restored_modes(module: nn.Module) -> Iterator[None]:
    """Put every submodule's train/eval mode back on exit, whatever the body switched."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input: size ``(H, W)``, normalisation, interpolation.

    ``crop_pct`` < 1 means "resize the short side to size / crop_pct, then centre-crop" (timm's
    evaluation transform); 1.0 means "resize to size".
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    in_chans: int = 3

    def __post_init__(self) -> None:
        # checked here, once, so a typo in a plugin's table or a hand-edited config.json fails where
        # it was made instead of silently resizing with another filter
        interp = str(self.interpolation).lower()
        if interp not in INTERPOLATIONS:
            raise ValueError(f"Preprocess(interpolation={self.interpolation!r}): unknown resize filter; "
                             f"use one of {', '.join(INTERPOLATIONS)}")
        object.__setattr__(self, "interpolation", interp)
        if len(self.input_size) != 2 or min(int(v) for v in self.input_size) < 1:
            raise ValueError(f"Preprocess(input_size={self.input_size!r}): must be (height, width), both >= 1")
        if len(self.mean) != len(self.std) or any(float(s) <= 0 for s in self.std):
            raise ValueError(f"Preprocess(mean={self.mean!r}, std={self.std!r}): one mean and one positive std "
                             "per channel")
        if not 0.0 < float(self.crop_pct) <= 2.0:
            raise ValueError(f"Preprocess(crop_pct={self.crop_pct!r}): must be in (0, 2]; 1.0 means no crop")

    def with_size(self, size: int | Sequence[int]) -> "Preprocess":
        """The same preprocessing at another input size."""
        hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return replace(self, input_size=hw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preprocess":
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                  if k in cls.__dataclass_fields__}
        return cls(**fields)


@dataclass
class PretrainedWeights:
    """A provider's named weights, described so the zoo can fetch and verify them itself.

    ``url`` is where to download from (None: only a local file can supply it); ``filename`` is the
    name in the cache (``$ZOO_HOME/weights/<plugin>/<filename>``); ``sha256`` is the full hash when
    the provider publishes it, ``hash_prefix`` the prefix torchvision embeds in its file names.
    """

    tag: str
    url: str | None
    filename: str
    sha256: str | None = None
    hash_prefix: str | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    preprocess: Preprocess | None = None
    license: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuiltModel:
    """What a model or head builder returns.

    ``head`` lists state-dict key prefixes of the task head: when ``num_classes`` differs from the
    pretrained weights, those tensors are re-initialised (and reported) instead of loaded.
    ``backbone`` lists the state-dict key prefixes of the pretrained feature extractor (ResNet's
    ``conv1``..``layer4``, U-Net's ``encoder``, a detector's ``backbone.body``): what the Trainer's
    ``freeze_backbone``, ``freeze_blocks`` and ``backbone_lr_mult`` act on; every other parameter
    (a new decoder, FPN, RPN and the head) trains at the full learning rate. For a classifier it is
    everything but the classifier (:func:`prefixes_except`); ``zoo.build`` fills it in for a head
    builder (where the backbone it was given sits in the returned net).
    ``map_state_dict`` converts foreign key layouts (another library's) to this network's.
    ``extra["task_options"]`` (a dict) becomes ``model.config["task_options"]``: the plugin's defaults
    for the task's options (e.g. ``{"loss": "dice_ce"}`` for U-Net), which the user may override.
    ``extra["rebuild_options"]`` (a dict) joins the options saved in ``config.json``: what the builder
    chose that a rebuild without the weights tag must repeat (declare them in the spec's ``saved_options``).
    """

    net: nn.Module
    preprocess: Preprocess
    num_classes: int
    head: tuple[str, ...] = ()
    pretrained: PretrainedWeights | None = None
    map_state_dict: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    export_formats: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    backbone: tuple[str, ...] = ()


def under(name: str, prefixes: Iterable[str]) -> bool:
    """Is state-dict key (or parameter name) ``name`` under one of ``prefixes`` (``a.b`` covers ``a.b.c``)?"""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _has_state(module: nn.Module) -> bool:
    """Does ``module`` hold any parameter or persistent buffer (a state-dict key)?"""
    if any(True for _ in module.parameters()):
        return True
    return any(name not in getattr(m, "_non_persistent_buffers_set", ()) and b is not None
               for m in module.modules() for name, b in m._buffers.items())


def prefixes_except(net: nn.Module, exclude: Sequence[str]) -> tuple[str, ...]:
    """The fewest state-dict prefixes that cover every tensor of ``net`` outside ``exclude``.

    What a classifier declares as its backbone: ``prefixes_except(resnet, ("fc",))`` is
    ``("conv1", "bn1", "layer1", ..., "layer4")``; ``prefixes_except(vgg, ("classifier.6",))`` is
    ``("features", "classifier.0", "classifier.3")``. Modules without state-dict tensors (no
    parameters, only non-persistent buffers such as rotary tables) are left out.
    """
    excluded = tuple(exclude)
    out: list[str] = []

    def visit(module: nn.Module, path: str) -> None:
        if path and under(path, excluded):
            return
        if path and not any(e.startswith(path + ".") for e in excluded):
            if _has_state(module):
                out.append(path)
            return
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for name, tensor in own:
            full = f"{path}.{name}" if path else name
            transient = name in getattr(module, "_non_persistent_buffers_set", ())
            if tensor is not None and not transient and not under(full, excluded):
                out.append(full)
        for name, child in module.named_children():
            visit(child, f"{path}.{name}" if path else name)

    visit(net, "")
    return tuple(out)


class ZooModel(nn.Module):
    """A task model: ``forward`` is the raw network's; ``predict`` returns typed predictions.

    Attributes: ``task`` (canonical task name), ``class_names``, ``preprocess``
    (:class:`Preprocess`), ``head_prefixes`` / ``backbone_prefixes`` (:class:`BuiltModel`'s ``head``
    and ``backbone``), ``config`` (how to rebuild it: model name, options) and ``provenance``
    (where its weights came from, and the :class:`~zoo_core.weights.LoadReport` of loading them).
    """

    def __init__(self, net: nn.Module, *, task: str, class_names: Sequence[str], preprocess: Preprocess,
                 config: dict[str, Any], head: Sequence[str] = (), export_formats: Sequence[str] = (),
                 provenance: dict[str, Any] | None = None, export_options: Mapping[str, Any] | None = None,
                 backbone: Sequence[str] = ()) -> None:
        super().__init__()
        self.net = net
        self.task = task
        self.class_names = list(class_names)
        self.preprocess = preprocess
        self.config = dict(config)
        self.head_prefixes = tuple(head)
        #: state-dict prefixes of the pretrained feature extractor (``BuiltModel.backbone``); () when the
        #: plugin declares none (the Trainer then treats everything but the head as backbone, and warns)
        self.backbone_prefixes = tuple(backbone)
        self.export_formats = tuple(export_formats)
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.weights_report: LoadReport | None = None
        self.last_metrics: dict[str, Any] = {}
        #: per-model export hints from the plugin (``BuiltModel.extra["export"]``; see zoo_core.export)
        self.export_options: dict[str, Any] = dict(export_options or {})

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label(self) -> str:
        """What to call this model in tables and messages: its name, or ``backbone + head`` if composed."""
        from .saving import model_label

        return model_label(self.config)

    @property
    def task_impl(self) -> "Task":
        """The task object that knows how to train and evaluate this model: the registry's, unless one was
        set on the model (``model.task_impl = MyTask()``: a subclass of its task written in your script,
        no plugin needed; ``None`` goes back to the registry's). It lives in this Python session only:
        ``model.save`` records the task's name, so a loaded model has the registry's task again."""
        own = self.__dict__.get("_own_task")
        if own is not None:
            return own
        from .api import get_task

        return get_task(self.task)

    @task_impl.setter
    def task_impl(self, task: "Task | None") -> None:
        from .registry import get_registry
        from .task import Task

        if task is not None:
            if not isinstance(task, Task):
                raise TypeError(f"model.task_impl must be a zoo_core.task.Task (an instance of a subclass of the "
                                f"{self.task} task's class), got {type(task).__name__}")
            name = get_registry().canonical_task(task.name) if task.name else ""
            if name != self.task:
                raise ValueError(f"{type(task).__name__}.name is {task.name!r}, but this model is a {self.task!r} "
                                 f"model; subclass the {self.task} task's class (its name is inherited)")
        self.__dict__["_own_task"] = task

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)

    def predict(self, inputs: Any, *, batch_size: int = 16, bgr: bool = False, **options: Any) -> list["Prediction"]:
        """Typed predictions (one per image, in order) for images, files, folders, globs, URLs or videos.

        ``inputs``: a path (an image file; a folder, read recursively in sorted order; a glob such as
        ``"photos/**/*.jpg"``; a video file, one prediction per frame, through PyAV: ``pip install av``),
        an ``http(s)`` URL (refused when ``ZOO_OFFLINE=1``), a PIL image, a ``(C,H,W)``/``(B,C,H,W)``
        tensor, a numpy array (``(H,W)``, ``(H,W,C)`` or ``(B,H,W,C)``, channels last as PIL and OpenCV
        give them, read as RGB: pass ``bgr=True`` for OpenCV's BGR arrays), or a list (or generator) of
        these; see :mod:`zoo_core.predict_sources`. A video's predictions have sources ``clip.mp4#frame=N``.

        Tensors are images in [0, 1] (not yet normalised): float tensors are used as they are (a warning
        when their values look like 0-255), integer tensors (uint8, or any integer dtype with values in
        0..255) are divided by 255, a 1-channel image given to a 3-channel model is repeated to 3
        channels (as PIL's ``convert("RGB")`` does); other dtypes, channel counts, NaN/Inf values and
        HWC layouts raise :class:`~zoo_core.errors.InputError` naming the input
        (:func:`~zoo_core.data.images.image_tensor`). The model's device is used. A model (or its net)
        in training mode is put in eval mode for each batch and every module's previous mode is
        restored afterwards; a model already in eval mode is used as it is, so a submodule you
        deliberately set to train (dropout for Monte-Carlo sampling) stays so, and no module walk is paid.

        ``options`` are the task's (``Task.predict_options``: ``topk=`` for classification;
        ``conf=``, ``iou=``, ``max_det=``, ``classes=`` for detection...); a name the task does not
        declare is an :class:`~zoo_core.errors.OptionError` listing the ones it does.

        NaN/Inf weights or outputs raise :class:`~zoo_core.errors.NonFiniteOutputError` instead of
        returning predictions built on them (:mod:`zoo_core.finite`; the weight check is cached until a
        weight changes, the outputs are counted on the device and read once per batch).

        This returns a list, so every prediction is held at once: for a long video or a large folder
        use :meth:`predict_iter`, which reads, predicts and yields one batch at a time.
        """
        return list(self.predict_iter(inputs, batch_size=batch_size, bgr=bgr, **options))

    def predict_iter(self, inputs: Any, *, batch_size: int = 16, bgr: bool = False,
                     **options: Any) -> Iterator["Prediction"]:
        """:meth:`predict` as a stream: ``batch_size`` images are read, predicted and yielded before the
        next are read, so a folder of any size or a long video never sits in memory.

        >>> for pred in model.predict_iter("clip.mp4", batch_size=8):   # one per frame, as they come
        ...     print(pred.source, pred.name)

        Option names, ``batch_size`` and the weights are checked when it is called; inputs are read
        (and a missing file named) as the iteration reaches them (:func:`zoo_core.predict_stream.stream`).
        """
        from .predict_stream import stream

        return (p.prediction for p in stream(self, inputs, batch_size=batch_size, bgr=bgr, options=options))

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ a README.md model card) into a directory."""
        from .saving import save_model

        return save_model(self, Path(path))

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> "ZooModel":
        """Load a directory written by :meth:`save` (same as ``zoo.load(path)``)."""
        from .saving import load_model

        return load_model(Path(path), **kwargs)

    def export(self, format: str, path: str | Path, **kwargs: Any) -> "ExportResult":
        """Export to ``"onnx"``, ``"torchscript"`` or ``"torch_export"``, verified against eager.

        Returns the result with the max abs difference; see :func:`zoo_core.export.export`.
        """
        from .export import export

        return export(self, format, path, **kwargs)

    def quantize(self, mode: str = "int8", *, calibration_data: Any = None, eval_data: Any = None,
                 **kwargs: Any) -> "QuantizeResult":
        """An int8 copy for CPU deployment, with size, latency and metric changes reported.

        See :func:`zoo_core.quantize.quantize`; this model is left unchanged.
        """
        from .quantize import quantize

        return quantize(self, mode, calibration_data=calibration_data, eval_data=eval_data, **kwargs)

    def prune(self, amount: float = 0.3, method: str = "l1-structured", *, calibration_data: Any = None,
              eval_data: Any = None, **kwargs: Any) -> "PruneResult":
        """A pruned copy (``"l1-structured"`` channels, or ``"unstructured"`` weights), with parameters,
        MACs, size, CPU latency and metric changes reported.

        See :func:`zoo_core.prune.prune`; this model is left unchanged.
        """
        from .prune import prune

        return prune(self, amount, method, calibration_data=calibration_data, eval_data=eval_data, **kwargs)

    def set_image_size(self, size: int | Sequence[int]) -> None:
        """Change the input size used by predict / evaluate / export (the Trainer's ``image_size``)."""
        self.preprocess = self.preprocess.with_size(size)

    def extra_repr(self) -> str:
        return f"task={self.task!r}, num_classes={self.num_classes}, model={self.label!r}"
