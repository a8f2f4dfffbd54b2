"""The timm classification plugin: the per-version catalog cache, the builder, heads and preprocessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import timm
import torch
from timm.data import resolve_data_config
from timm.models import get_pretrained_cfg

import zoo_core as zoo
from zoo_core.paths import zoo_home
from zoo_core.registry import get_registry
from zoo_timm import catalog
from zoo_timm.classification import build, describe, weights_info


def test_catalog_equals_timm() -> None:
    fresh = catalog.load_catalog(refresh=True)  # computed by asking timm
    models = catalog.load_catalog()  # read back from the JSON cache
    assert list(fresh) == list(models) == timm.list_models() and fresh == models
    by_model: dict[str, set[str]] = {}
    for full in timm.list_pretrained():
        name, tag = full.split(".", 1)
        by_model.setdefault(name, set()).add(tag)
    assert {n: set(e["weights"]) for n, e in models.items() if e["weights"]} == by_model
    assert models["resnet50"]["weights"][0] == get_pretrained_cfg("resnet50").tag == "a1_in1k"
    assert models["vit_base_patch16_384"]["input_size"] == [3, 384, 384]


def test_catalog_is_cached_per_version_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.load_catalog()
    path = catalog.catalog_path()
    assert path == zoo_home() / "catalog" / f"timm-{timm.__version__}.json"
    data = json.loads(path.read_text())
    assert data["timm_version"] == timm.__version__ and len(data["models"]) == len(timm.list_models())

    def no_timm(*args, **kwargs):
        raise AssertionError("a warm catalog must not ask timm")

    monkeypatch.setattr(catalog, "compute_catalog", no_timm)
    assert len(catalog.load_catalog()) == len(timm.list_models())


def test_corrupt_catalog_is_rebuilt_and_a_new_version_gets_its_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    path = catalog.catalog_path()
    path.write_text("{ truncated")
    assert len(catalog.load_catalog()) == len(timm.list_models())
    assert json.loads(path.read_text())["format"] == catalog.FORMAT
    monkeypatch.setattr(catalog, "timm_version", lambda: "0.0.0-test")
    models = catalog.load_catalog()
    assert catalog.catalog_path().name == "timm-0.0.0-test.json" and catalog.catalog_path().exists()
    assert len(models) == len(timm.list_models())


def test_listing_with_a_warm_cache_imports_neither_timm_nor_torch() -> None:
    catalog.load_catalog()  # warm (the session's ZOO_HOME is in the environment)
    code = ("import sys, zoo_core as zoo; n = len(zoo.list_models(task='cls', plugin='timm')); "
            "print(n, 'timm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout.split()
    assert out == [str(len(timm.list_models())), "False", "False"]


def test_specs_are_registered_with_priority_tags_and_sizes() -> None:
    spec = get_registry().resolve("model", "timm:vit_small_patch16_384")
    assert spec.priority == 10 and spec.tasks == ("classification", "multilabel_classification")  # one network
    assert spec.input_size == (3, 384, 384)
    assert spec.weights and spec.weights_info == "zoo_timm.classification:weights_info"
    assert zoo.info("vit_small_patch16_384").default == "timm:vit_small_patch16_384"
    assert "timm:resnet50" in zoo.info("resnet50").providers


def test_builder_resnet18_matches_timms_own_config() -> None:
    model = zoo.load("timm:resnet18", task="cls", num_classes=10)
    assert model.head_prefixes == ("fc",) and model.net.fc.out_features == 10
    cfg = resolve_data_config({}, model=model.net)
    pre = model.preprocess
    assert (3, *pre.input_size) == cfg["input_size"] and pre.interpolation == cfg["interpolation"]
    assert pre.mean == tuple(cfg["mean"]) and pre.std == tuple(cfg["std"]) and pre.crop_pct == cfg["crop_pct"]


def test_tag_sets_config_and_class_count() -> None:
    spec = get_registry().resolve("model", "timm:resnet18")
    tv = build(spec, task="classification", pretrained="tv_in1k")
    assert tv.preprocess.interpolation == "bilinear" and tv.preprocess.crop_pct == pytest.approx(0.875)
    assert tv.pretrained.url == "https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors"
    assert tv.pretrained.filename == "resnet18.tv_in1k.safetensors" and tv.pretrained.num_classes == 1000
    assert tv.pretrained.class_names[0].startswith("tench") and tv.num_classes == 1000
    vit = get_registry().resolve("model", "timm:vit_tiny_patch16_224")
    in21k = build(vit, task="classification", pretrained="augreg_in21k", img_size=32)
    assert in21k.num_classes == get_pretrained_cfg("vit_tiny_patch16_224.augreg_in21k").num_classes > 1000
    assert in21k.preprocess.input_size == (32, 32) and in21k.pretrained.preprocess.input_size == (32, 32)
    infos = weights_info(spec)
    assert [w.tag for w in infos] == list(spec.weights) and len({w.filename for w in infos}) == len(infos)


def test_vit_and_distilled_heads() -> None:
    vit = zoo.load("timm:vit_tiny_patch16_224", task="cls", num_classes=4, img_size=32)
    assert vit.head_prefixes == ("head",) and vit.preprocess.input_size == (32, 32)
    assert vit.preprocess.mean == (0.5, 0.5, 0.5) and vit(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    deit = zoo.load("timm:deit_tiny_distilled_patch16_224", task="cls", num_classes=3, img_size=32)
    assert deit.head_prefixes == ("head", "head_dist")
    assert deit.net.head.out_features == 3 and deit.net.head_dist.out_features == 3


def test_describe_without_hub_uses_timms_url() -> None:
    cfg = dict(get_pretrained_cfg("resnet18.tv_in1k").to_dict(), hf_hub_id=None)
    w = describe("resnet18", "tv_in1k", cfg)
    assert w.url == cfg["url"] and w.filename == "resnet18.tv_in1k.pth"
    w = describe("x", "y", {"url": "https://e/x.npz", "custom_load": True, "num_classes": 5})
    assert w.url is None and w.num_classes == 5  # a custom format: only a converted local file can supply it


def test_headless_embedding_models_get_a_head_or_a_clear_error() -> None:
    eva = zoo.load("timm:eva02_tiny_patch14_224", task="cls")  # timm's config: num_classes=0
    assert eva.num_classes == 1000 and eva.head_prefixes == ("head",) and eva.net.head.out_features == 1000
    with torch.device("meta"), pytest.raises(zoo.IncompatibleError, match="encoder-only.*backbone"):
        zoo.load("timm:qwen3_vit_88m_enc", task="cls")
