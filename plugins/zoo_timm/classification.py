"""The one builder behind every timm classification spec, and timm's weights described for the zoo.

``build`` calls ``timm.create_model(name[.tag], pretrained=False, num_classes=...)`` (timm never
downloads here), takes the preprocessing from the model's ``pretrained_cfg`` (input size, mean/std,
interpolation, crop_pct) and the head from its ``classifier`` entry, and describes the tag's weights
(Hugging Face Hub ``model.safetensors`` where timm hosts them there, else timm's URL) so the zoo
fetches and loads them itself. State dicts pass through the architecture's own
``checkpoint_filter_fn`` when it has one, as timm does when it loads pretrained weights (it is a
no-op for timm's own layout and converts e.g. original JAX/DeiT layouts).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable, Mapping

import torch

from zoo_core.errors import IncompatibleError
from zoo_core.model import IMAGENET_MEAN, IMAGENET_STD, BuiltModel, Preprocess, PretrainedWeights, prefixes_except
from zoo_core.specs import ModelSpec

from .options import create_checked

#: head size for a model whose timm config has no classifier (``num_classes=0``: CLIP/DINOv2/EVA-02
#: image towers and other embedding models) when the caller does not say ``num_classes``
DEFAULT_NUM_CLASSES = 1000
HF_URL = "https://huggingface.co/{repo}/resolve/main/{filename}"
FILTER_NAMES = ("checkpoint_filter_fn", "_filter_fn")


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    return dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg or {})


def preprocess_from_cfg(cfg: Mapping[str, Any], img_size: Any = None) -> Preprocess:
    """A :class:`Preprocess` from a timm pretrained config (``img_size`` overrides the size)."""
    c, h, w = tuple(cfg.get("input_size") or (3, 224, 224))
    pre = Preprocess(input_size=(int(h), int(w)), mean=tuple(cfg.get("mean") or IMAGENET_MEAN),
                     std=tuple(cfg.get("std") or IMAGENET_STD),
                     interpolation=str(cfg.get("interpolation") or "bicubic"),
                     crop_pct=float(cfg.get("crop_pct") or 0.875), in_chans=int(c))
    return pre.with_size(img_size) if img_size is not None else pre


def class_names_from_cfg(cfg: Mapping[str, Any]) -> list[str] | None:
    """Class names of a pretrained config: its own ``label_names``, else timm's ImageNet label sets."""
    n = cfg.get("num_classes")
    if cfg.get("label_names"):
        return [str(x) for x in cfg["label_names"]]
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(dict(cfg))
        if subset:
            names = ImageNetInfo(subset).label_descriptions()
            return list(names) if n is None or len(names) == n else None
    except Exception:  # label sets are a nicety; a model without them still works
        return None
    return None


def describe(name: str, tag: str, cfg: Mapping[str, Any] | None = None) -> PretrainedWeights:
    """Where timm's weights ``name.tag`` live and what they are (from timm's pretrained config)."""
    if cfg is None:
        from timm.models import get_pretrained_cfg

        cfg = _cfg_dict(get_pretrained_cfg(f"{name}.{tag}", allow_unregistered=False))
    hub = cfg.get("hf_hub_id")
    if hub and "/" in hub and not hub.endswith("/"):
        remote = cfg.get("hf_hub_filename") or "model.safetensors"
        url: str | None = HF_URL.format(repo=hub, filename=remote)
        ext = remote.rsplit(".", 1)[-1]
    elif cfg.get("url") and not cfg.get("custom_load"):
        url = cfg["url"]
        ext = url.rsplit("/", 1)[-1].rsplit(".", 1)[-1] if "." in url.rsplit("/", 1)[-1] else "pth"
    else:  # only a custom (e.g. JAX .npz) format: a converted local file must be supplied
        url, ext = None, "safetensors"
    return PretrainedWeights(
        tag=tag, url=url, filename=f"{name}.{tag}.{ext}", num_classes=cfg.get("num_classes"),
        class_names=class_names_from_cfg(cfg), preprocess=preprocess_from_cfg(cfg),
        license=cfg.get("license"),
        metrics={k: cfg[k] for k in ("paper_ids", "origin_url", "notes") if cfg.get(k)})


def weights_info(spec: ModelSpec) -> list[PretrainedWeights]:
    """Every pretrained tag of a timm spec, described without building the network."""
    return [describe(spec.name, tag) for tag in spec.weights]


def head_prefixes(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """State-dict prefixes of the classifier(s) named by ``pretrained_cfg['classifier']``."""
    classifier = cfg.get("classifier") or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def classifier_names(net: torch.nn.Module) -> tuple[str, ...]:
    """Where the module(s) of timm's ``get_classifier()`` sit in ``net`` (for a config naming none)."""
    get = getattr(net, "get_classifier", None)
    found = get() if callable(get) else ()
    wanted = found if isinstance(found, (tuple, list)) else (found,)
    return tuple(name for name, module in net.named_modules() if name and any(module is m for m in wanted))


def state_filter(net: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    """The architecture module's ``checkpoint_filter_fn`` bound to ``net`` (None if it has none)."""
    module = sys.modules.get(type(net).__module__)
    fn = next((getattr(module, n) for n in FILTER_NAMES if callable(getattr(module, n, None))), None)
    if fn is None:
        return None
    takes_model = len(inspect.signature(fn).parameters) >= 2

    def mapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return fn(state, net) if takes_model else fn(state)

    return mapped


def build(spec: ModelSpec, *, task: str, num_classes: int | None = None, pretrained: str | None = None,
          **options: Any) -> BuiltModel:
    """Build timm model ``spec.name`` (with tag ``pretrained``'s config) for classification.

    ``options`` go to ``timm.create_model`` (``drop_rate``, ``drop_path_rate``, ``img_size``,
    ``in_chans``...). ``num_classes`` defaults to the tag's (1000 for ImageNet-1k), or to
    :data:`DEFAULT_NUM_CLASSES` for embedding models whose config has no classifier.
    """
    from timm.models import get_pretrained_cfg

    arch = f"{spec.name}.{pretrained}" if pretrained else spec.name
    kwargs = dict(options)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    elif not getattr(get_pretrained_cfg(arch), "num_classes", None):  # a headless embedding model
        kwargs["num_classes"] = DEFAULT_NUM_CLASSES
    net = create_checked(arch, kwargs, options, what=f"timm:{spec.name}")  # unknown options: OptionError
    if not getattr(net, "num_classes", 0):
        raise IncompatibleError(f"timm:{spec.name} built without a classification head (an encoder-only "
                                "model); use it as a backbone with zoo.build(...) instead")
    cfg = _cfg_dict(getattr(net, "pretrained_cfg", None) or getattr(net, "default_cfg", None))
    preprocess = preprocess_from_cfg(cfg, options.get("img_size"))
    if "in_chans" in options and int(options["in_chans"]) != len(preprocess.mean):
        c = int(options["in_chans"])
        preprocess = Preprocess(preprocess.input_size, (sum(preprocess.mean) / len(preprocess.mean),) * c,
                                (sum(preprocess.std) / len(preprocess.std),) * c, preprocess.interpolation,
                                preprocess.crop_pct, c)
    info = describe(spec.name, pretrained, cfg) if pretrained else None
    if info is not None:
        info.preprocess = preprocess
    head = head_prefixes(cfg)
    return BuiltModel(net=net, preprocess=preprocess, num_classes=int(net.num_classes), head=head,
                      pretrained=info, map_state_dict=state_filter(net),
                      backbone=prefixes_except(net, head or classifier_names(net)))
