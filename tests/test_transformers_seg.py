"""zoo_transformers' segmentation half: SegFormer and Mask2Former models, DINOv2 and SigLIP backbones.

Tiny random configs (nothing is downloaded): training through zoo.Trainer on the synthetic shapes,
evaluation, typed predictions, Hub-layout weights files (what ``save_pretrained`` writes) loading exactly,
offline refusal, freeze_backbone, composition with stride-14 DINOv2, ONNX export checked against eager, and
the conformance suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

import zoo_core as zoo  # noqa: E402
from zoo_core.data.shapes import make_shapes  # noqa: E402
from zoo_core.errors import IncompatibleError, WeightsError  # noqa: E402
from zoo_core.task import Batch, SegmentationMask  # noqa: E402
from zoo_core.testing import check_spec  # noqa: E402

QUIET = dict(num_workers=0, verbose=False, tensorboard=False, plots=False, device="cpu")
SEGFORMER = dict(hidden_sizes=[16, 16, 32, 32], depths=[1, 1, 1, 1], decoder_hidden_size=32,
                 num_attention_heads=[1, 1, 1, 1], image_size=64)
MASK2FORMER = dict(backbone_config=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4),
                   feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1,
                   decoder_layers=2, num_attention_heads=2, dim_feedforward=32, num_queries=8, train_num_points=256,
                   image_size=64)
DINO = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=1)
SIGLIP = dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32)


def segformer(num_classes: int = 4, **kw):
    return zoo.load("segformer_b0", task="seg", num_classes=num_classes, seed=0, **{**SEGFORMER, **kw})


def mask2former(num_classes: int = 4, **kw):
    return zoo.load("mask2former_swin_tiny", task="seg", num_classes=num_classes, seed=0, **{**MASK2FORMER, **kw})


def weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def changed(before, net):
    return {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("tseg") / "shapes", layout="masks", n_train=4, n_val=2, image_size=64)


# ---- the catalog ----------------------------------------------------------------------------------
def test_catalog_lists_the_models_and_backbones_without_importing_torch_or_transformers():
    code = ("import sys, zoo_transformers.seg_catalog as c; specs = []\n"
            "c.register_models(lambda n, b, **f: specs.append(n))\n"
            "c.register_backbones(lambda n, b, **f: specs.append(n))\n"
            "print(sorted(specs)); assert 'transformers' not in sys.modules and 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted([*(f"segformer_b{i}" for i in range(6)), "mask2former_swin_tiny", "dinov2_small",
                                      "dinov2_base", "siglip_base_patch16_224"]))
    assert set(zoo.list_models(task="seg", plugin="transformers")) >= {"segformer_b0", "segformer_b5",
                                                                        "mask2former_swin_tiny"}
    assert {"dinov2_small", "dinov2_base", "siglip_base_patch16_224"} <= set(zoo.list_backbones())


def test_weights_tags_name_hub_files_and_licences():
    from zoo_transformers.segmentation import weights_info
    from zoo_core.registry import get_registry

    info = {w.tag: w for w in weights_info(get_registry().resolve("model", "transformers:segformer_b5"))}
    hub = "https://huggingface.co/nvidia/segformer-b5-finetuned-ade-640-640"
    assert info["ade"].url == f"{hub}/resolve/main/model.safetensors"
    assert info["ade"].num_classes == 150 and info["ade"].preprocess.input_size == (640, 640)
    assert info["imagenet"].url.endswith("/nvidia/mit-b5/resolve/main/model.safetensors")
    assert "NVIDIA Source Code License" in info["cityscapes"].license and info["cityscapes"].num_classes == 19
    from zoo_transformers.backbones import weights_info as backbone_info

    (dino,) = backbone_info(get_registry().resolve("backbone", "transformers:dinov2_small"))
    assert dino.url.endswith("/facebook/dinov2-small/resolve/main/model.safetensors") and dino.license == "Apache-2.0"


def test_a_tag_missing_offline_fails_at_once_saying_how_to_supply_the_file():
    with pytest.raises(WeightsError) as err:
        zoo.load("segformer_b0", task="seg", weights="ade", **SEGFORMER)
    msg = str(err.value)
    assert "ZOO_OFFLINE" in msg and "nvidia/segformer-b0-finetuned-ade-512-512" in msg and "weights=" in msg


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ImportError, match=r'pip install "zoo\[transformers\]"'):
        zoo.load("segformer_b0", task="seg", num_classes=2)


def test_unknown_config_fields_are_refused_not_swallowed():
    with pytest.raises(zoo.errors.OptionError, match="hiden_sizes"):
        zoo.load("segformer_b0", task="seg", hiden_sizes=[8, 8, 8, 8])


# ---- SegFormer ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_segformer_trains_evaluates_and_predicts_masks_at_the_input_size(shapes, tmp_path):
    model = segformer()
    before = weights(model.net)
    result = zoo.Trainer(max_epochs=1, batch_size=2, lr=0.01, out_dir=tmp_path, **QUIET).fit(model, shapes)
    assert changed(before, model.net) and result.steps == 2
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.metrics.items() if "loss" in k)
    report = zoo.evaluate(model, shapes, split="val", plots=False)
    assert 0.0 <= report["miou"] <= 1.0
    preds = model.predict([torch.rand(3, 50, 70)])  # another size: the mask comes back at the image's
    assert isinstance(preds[0], SegmentationMask) and tuple(preds[0].mask.shape) == (50, 70)
    logits = model.eval()(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 4, 64, 64)  # 1/4-resolution logits upsampled to the input


@pytest.mark.slow
def test_segformer_freeze_backbone_trains_the_decode_head_only(shapes, tmp_path):
    model = segformer()
    assert model.backbone_prefixes == ("hf.segformer",) and model.head_prefixes == ("hf.decode_head",)
    before = weights(model.net)
    zoo.Trainer(max_epochs=1, batch_size=2, limit_train_batches=2, lr=0.01, freeze_backbone=True, out_dir=tmp_path,
                **QUIET).fit(model, shapes, val=False)
    moved = changed(before, model.net)
    assert not {k for k in moved if k.startswith("hf.segformer.")}
    decode = {k for k, _ in model.net.named_parameters() if k.startswith("hf.decode_head.")}
    assert decode and decode <= moved


def test_a_save_pretrained_file_loads_through_the_zoo_with_identical_outputs(tmp_path):
    from safetensors.torch import load_file

    ref = segformer()
    ref.net.hf.save_pretrained(tmp_path / "hf")  # the Hub's key layout (encoder.block.*, linear_c.*)
    keys = load_file(tmp_path / "hf" / "model.safetensors")
    assert any(".encoder.block." in k for k in keys)  # not the in-memory layout: renaming is exercised
    again = zoo.load("segformer_b0", task="seg", num_classes=4, weights=tmp_path / "hf" / "model.safetensors",
                     seed=1, **SEGFORMER)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(ref.eval()(x), again.eval()(x))
    assert not again.weights_report.missing and not again.weights_report.reinitialized


def test_imagenet_encoder_file_loads_the_encoder_and_reports_the_new_decode_head(tmp_path):
    from transformers import SegformerConfig, SegformerForImageClassification

    keep = {k: v for k, v in SEGFORMER.items() if k != "image_size"}
    cls = SegformerForImageClassification(SegformerConfig(**keep, num_labels=10))
    cls.save_pretrained(tmp_path / "mit")  # what nvidia/mit-b* hold: the encoder and an ImageNet classifier
    with pytest.warns(UserWarning):
        model = zoo.load("segformer_b0", task="seg", num_classes=4, weights=tmp_path / "mit" / "model.safetensors",
                         **SEGFORMER)
    report = model.weights_report
    assert report.reinitialized and all(k.startswith("hf.decode_head.") for k in report.reinitialized)
    enc = cls.segformer.state_dict()
    assert all(torch.equal(v, enc[k]) for k, v in model.net.hf.segformer.state_dict().items())


@pytest.mark.slow
def test_segformer_exports_to_onnx_matching_eager(tmp_path):
    result = segformer().export("onnx", tmp_path / "segformer.onnx")
    assert result.max_abs_diff <= result.tolerance


@pytest.mark.slow
def test_segformer_passes_the_conformance_suite():
    """The real segformer_b0 (3.7M parameters, 512 px); export is checked on the tiny config above."""
    check_spec("transformers:segformer_b0", checks=["build", "contract", "train_step", "freeze", "save_load",
                                                    "num_classes"]).raise_for_failures()


# ---- Mask2Former ----------------------------------------------------------------------------------
def test_mask2former_trains_with_its_own_hungarian_loss_through_the_task():
    from zoo_transformers.segmentation import per_class_masks

    model = mask2former()
    assert model.config["task_options"] == {"loss": "model"}
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 64, 64), generator=g)
    target[:, :8] = 255
    target[1] = 255  # an image with no labelled pixel: no masks, still a finite loss
    batch = Batch(torch.rand(2, 3, 64, 64, generator=g), target, [{}, {}])
    model.train()
    torch.manual_seed(1)
    losses = model.task_impl.loss(model, batch)
    masks, labels = per_class_masks(target, 4)
    assert [m.shape[0] for m in masks] == [4, 0] and labels[0].tolist() == [0, 1, 2, 3]
    torch.manual_seed(1)  # the loss samples points at random: same seed, same points
    direct = model.net.hf(pixel_values=batch.inputs, mask_labels=masks, class_labels=labels).loss
    assert torch.isfinite(losses["loss"]) and torch.equal(losses["loss"], direct)
    losses["loss"].backward()
    assert model.net.hf.class_predictor.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_mask2former_trains_evaluates_and_predicts_through_the_zoo(shapes, tmp_path):
    model = mask2former()
    before = weights(model.net)
    result = zoo.Trainer(max_epochs=1, batch_size=2, lr=1e-3, out_dir=tmp_path, **QUIET).fit(model, shapes)
    assert changed(before, model.net) and result.steps == 2
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.metrics.items() if "loss" in k)
    report = zoo.evaluate(model, shapes, split="val", plots=False)
    assert 0.0 <= report["miou"] <= 1.0
    scores = model.eval()(torch.rand(1, 3, 64, 64))
    assert scores.shape == (1, 4, 64, 64) and bool((scores <= 0).all())  # log of scores in [0, 1]
    (pred,) = model.predict([torch.rand(3, 64, 80)])
    assert isinstance(pred, SegmentationMask) and tuple(pred.mask.shape) == (64, 80)


def test_mask2former_save_pretrained_file_loads_with_identical_outputs(tmp_path):
    ref = mask2former()
    ref.net.hf.save_pretrained(tmp_path / "hf")
    again = zoo.load("mask2former_swin_tiny", task="seg", num_classes=4, weights=tmp_path / "hf" / "model.safetensors",
                     seed=1, **MASK2FORMER)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(ref.eval()(x), again.eval()(x))


def test_mask2former_refuses_a_single_class():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        mask2former(num_classes=1)


@pytest.mark.slow
def test_mask2former_exports_to_onnx_matching_eager(tmp_path):
    model = mask2former()
    attention = model.net.hf.config._attn_implementation
    result = model.export("onnx", tmp_path / "m2f.onnx", dynamic_batch=False)
    assert result.exporter == "dynamo" and result.max_abs_diff <= result.tolerance
    assert model.net.hf.config._attn_implementation == attention  # eager attention only while exporting


# ---- DINOv2 / SigLIP backbones --------------------------------------------------------------------
def test_dinov2_stride_14_under_deeplabv3_gives_input_size_logits_and_trains():
    model = zoo.build("seg", backbone="dinov2_small", head="deeplabv3", num_classes=3, seed=0,
                      backbone_options={**DINO, "image_size": 64})
    assert model.backbone_prefixes == ("backbone",) and model.net.backbone.feature_info.reduction() == [14]
    x = torch.rand(2, 3, 64, 64)  # 64 is no multiple of 14: a 4x4 patch grid, logits still 64x64
    assert model.eval()(x).shape == (2, 3, 64, 64)
    model.train()
    target = torch.randint(0, 3, (2, 64, 64))
    before = weights(model.net)
    loss = model.task_impl.loss(model, Batch(x, target, [{}, {}]))["loss"]
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(k.startswith("backbone.hf.") for k in changed(before, model.net))


def test_dinov2_pyramid_heads_are_refused_for_stride_14_and_fit_with_feature_stride_16():
    with pytest.raises(IncompatibleError, match="stride 14"):
        zoo.build("seg", backbone="dinov2_small", head="unet", num_classes=3, backbone_options=DINO)
    model = zoo.build("seg", backbone="dinov2_small", head="unet", num_classes=3,
                      backbone_options={**DINO, "feature_stride": 16})
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_siglip_stride_16_gets_the_simple_feature_pyramid():
    model = zoo.build("seg", backbone="siglip_base_patch16_224", head="unet", num_classes=2, backbone_options=SIGLIP)
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.slow
def test_dinov2_composed_model_exports_to_onnx_matching_eager(tmp_path):
    model = zoo.build("seg", backbone="dinov2_small", head="deeplabv3", num_classes=3, seed=0,
                      backbone_options={**DINO, "image_size": 70})
    result = model.export("onnx", tmp_path / "dino.onnx")
    assert result.max_abs_diff <= result.tolerance


def test_a_cached_hub_file_loads_as_the_backbone_tag_offline(tmp_path, monkeypatch):
    """The tag's file in the cache (as `zoo pull` leaves it) loads with no network, in the Hub's key layout."""
    from transformers import Dinov2Config, Dinov2Model

    hf = Dinov2Model(Dinov2Config(**DINO, image_size=518, patch_size=14))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    hf.save_pretrained(tmp_path / "hf")
    cached = tmp_path / "weights" / "transformers" / "facebook--dinov2-small.safetensors"
    cached.parent.mkdir(parents=True)
    (tmp_path / "hf" / "model.safetensors").rename(cached)
    model = zoo.build("seg", backbone="dinov2_small", head="deeplabv3", num_classes=3, pretrained="lvd142m",
                      backbone_options=DINO)
    x = torch.rand(1, 3, 70, 70)
    tokens = hf.eval()(pixel_values=x).last_hidden_state[:, 1:]
    (fmap,) = model.net.backbone.eval()(x)
    assert torch.equal(fmap, tokens.transpose(1, 2).reshape(1, 32, 5, 5))
    assert model.provenance["license"] == "Apache-2.0"


@pytest.mark.slow
def test_dinov2_backbone_passes_the_conformance_suite():
    """The real dinov2_small (22M parameters) on a 70 px input (five 14-px patches a side)."""
    check_spec("transformers:dinov2_small").raise_for_failures()
