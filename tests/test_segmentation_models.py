"""Segmentation models: torchvision DeepLabV3/FCN/LR-ASPP, smp architectures, the deeplabv3/unet heads,
and a small U-Net that must learn the synthetic shapes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import get_model_weights

import zoo_core as zoo
from zoo_core.backbone import SimpleFeaturePyramid
from zoo_core.cli import main
from zoo_core.data.shapes import make_shapes
from zoo_core.errors import UnknownNameError
from zoo_smp.plugin import MODELS as SMP_MODELS
from zoo_tasks.losses import DiceCE
from zoo_torchvision.seg_specs import MODELS as TV_MODELS
from zoo_torchvision.segmentation import describe

TINY_TIMM = "timm:test_resnet"
VIT = ("timm:vit_tiny_patch16_224", {"img_size": 64})


def _batch(k: int, size: int = 64, n: int = 2):
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, k, (n, size, size), generator=g)
    target[:, :4] = 255
    return zoo.task.Batch(torch.randn(n, 3, size, size, generator=g), target, [{"source": str(i)} for i in range(n)])


# ---- torchvision ----------------------------------------------------------------------------------
def test_torchvision_specs_list_every_weights_enum_member():
    assert set(zoo.list_models(task="seg", plugin="torchvision")) == {name for name, _, _ in TV_MODELS}
    for name, _, _ in TV_MODELS:
        info = zoo.info(f"torchvision:{name}")
        assert info.weights[f"torchvision:{name}"] == [w.name for w in get_model_weights(name)]
        desc = describe(name, "COCO_WITH_VOC_LABELS_V1")
        assert desc.num_classes == 21 and desc.class_names[0] == "__background__"
        assert desc.url.endswith(desc.filename) and desc.hash_prefix and desc.preprocess.input_size == (520, 520)
        assert "miou" in str(desc.metrics).lower()


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_small_torchvision_models_train_step(name):
    model = zoo.load(name, task="seg", num_classes=3)
    assert model.head_prefixes == (("classifier.4", "aux_classifier.4") if name.startswith("deeplab")
                                   else ("classifier.low_classifier", "classifier.high_classifier"))
    model.train()
    losses = model.task_impl.loss(model, _batch(3))
    assert ("aux" in losses) == name.startswith("deeplab") and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.net.backbone.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["deeplabv3_resnet50", "deeplabv3_resnet101", "fcn_resnet50", "fcn_resnet101"])
def test_large_torchvision_models_build_and_shape_on_meta(name):
    with torch.device("meta"):  # construction and shapes only: no memory, no compute
        model = zoo.load(name, task="seg", num_classes=5)
        out = model.eval()(torch.empty(1, 3, 64, 64))
    assert out["out"].shape == (1, 5, 64, 64) and out["aux"].shape == (1, 5, 64, 64)
    assert model.net.classifier[4].out_channels == 5 and model.net.aux_classifier[4].out_channels == 5


def test_num_classes_replaces_only_the_class_convolutions(tmp_path):
    torch.manual_seed(0)
    source = zoo.load("deeplabv3_mobilenet_v3_large", task="seg")  # 21 VOC classes, random
    assert source.num_classes == 21
    path = tmp_path / "voc.safetensors"
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))
    same = zoo.load("deeplabv3_mobilenet_v3_large", task="seg", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(same(x)["out"], source.eval()(x)["out"])
    with pytest.warns(UserWarning, match="re-initiali"):
        new = zoo.load("deeplabv3_mobilenet_v3_large", task="seg", num_classes=4, weights=path)
    assert sorted(new.weights_report.reinitialized) == ["aux_classifier.4.bias", "aux_classifier.4.weight",
                                                        "classifier.4.bias", "classifier.4.weight"]
    kept = new.net.state_dict()
    assert torch.equal(kept["classifier.0.convs.0.0.weight"], source.net.state_dict()["classifier.0.convs.0.0.weight"])
    no_aux = zoo.load("deeplabv3_mobilenet_v3_large", task="seg", weights=path, aux_loss=False).eval()
    assert set(no_aux(x)) == {"out"} and torch.equal(no_aux(x)["out"], source(x)["out"])


# ---- smp ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, arch, loss", [row[:3] for row in SMP_MODELS])
def test_every_smp_architecture_builds_and_runs(name, arch, loss):
    size = 128 if arch == "PAN" else 64  # PAN's pyramid pooling needs 4x4 at stride 32
    model = zoo.load(name, task="seg", backbone=TINY_TIMM, num_classes=3)
    assert type(model.net).__name__ == arch and model.config["options"] == {"backbone": TINY_TIMM}
    assert model.config["task_options"] == {"loss": loss}
    model.train()
    losses = model.task_impl.loss(model, _batch(3, size))
    assert torch.isfinite(losses["loss"])
    assert model.eval()(torch.randn(1, 3, size, size)).shape == (1, 3, size, size)


def test_unet_on_smp_and_timm_encoders_with_dice_ce(tmp_path):
    unet = zoo.load("unet", task="seg", backbone="resnet18", num_classes=5)
    assert unet.config["model"] == "smp:unet" and unet.head_prefixes == ("segmentation_head",)
    assert isinstance(unet.task_impl.loss_fn(unet), DiceCE)
    assert unet.net.encoder.__class__.__name__ == "ResNetEncoder"
    tu = zoo.load("unet", task="seg", backbone="tu-test_resnet", num_classes=2)
    assert tu.net.encoder.__class__.__name__ == "TimmUniversalEncoder"
    unet.eval()
    x = torch.randn(1, 3, 64, 64)
    reloaded = zoo.load(unet.save(tmp_path / "unet"))
    assert torch.equal(reloaded.eval()(x), unet(x)) and reloaded.config["task_options"] == {"loss": "dice_ce"}
    with pytest.raises(UnknownNameError, match="smp encoder 'resnet19'.*resnet18"):
        zoo.load("unet", task="seg", backbone="resnet19")
    with pytest.raises(ValueError, match="never downloads"):
        zoo.load("unet", task="seg", encoder_weights="imagenet")


@pytest.mark.parametrize("name, extra", [("unet", {"backbone": "resnet18"}), ("lraspp_mobilenet_v3_large", {}),
                                         ("deeplabv3_mobilenet_v3_large", {})])
def test_a_misspelt_builder_option_is_refused_not_dropped(name, extra):
    """torchvision's and smp's constructors swallow unknown **kwargs; the zoo names them instead."""
    with pytest.raises(TypeError, match=r"does not accept option\(s\) \['decoder_chanels'\]; it takes \["):
        zoo.load(name, task="seg", num_classes=3, decoder_chanels=(8, 8), **extra)


def test_info_unet_says_which_backbones_fit(capsys):
    assert main(["info", "unet"]) == 0
    out = capsys.readouterr().out
    assert "smp:unet" in out and "resnet34" in out and "tu-<name>" in out and "head='unet'" in out


# ---- heads on any backbone ------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["deeplabv3", "unet"])
@pytest.mark.parametrize("backbone, options", [(TINY_TIMM, {}), VIT], ids=["convnet", "vit"])
def test_heads_on_a_convnet_and_on_a_vit(head, backbone, options):
    model = zoo.build("seg", backbone=backbone, head=head, num_classes=5, backbone_options=options)
    if backbone.startswith("timm:vit"):
        # deeplabv3 reads the single stride-16 map; unet needs a pyramid and gets the adapter
        assert isinstance(model.net.backbone, SimpleFeaturePyramid) == (head == "unet")
        assert model.preprocess.input_size == (64, 64)
    assert model.config["head"] == {"deeplabv3": "torchvision:deeplabv3", "unet": "smp:unet"}[head]
    model.train()
    losses = model.task_impl.loss(model, _batch(5))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    first = next(p for p in model.net.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0  # the loss reaches the backbone
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
    assert ("task_options" in model.config) == (head == "unet")


def test_compat_lists_both_heads_for_a_vit():
    fits = zoo.compat("vit_tiny_patch16_224", task="seg")
    assert fits["torchvision:deeplabv3"] is None and fits["smp:unet"] is None


def test_zoo_info_describes_a_head_and_zoo_compat_prints_the_verdicts(capsys):
    assert main(["info", "faster_rcnn"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("faster_rcnn: a detection head, not a whole model") and "torchvision:faster_rcnn" in out
    assert "task:          detection" in out and "min_levels=2" in out and "head='faster_rcnn'" in out
    assert main(["compat", "timm:vit_tiny_patch16_224", "--task", "seg"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in lines) == ["smp:unet", "torchvision:deeplabv3", "torchvision:fpn",
                                                         "torchvision:upernet"]
    assert all(line.split()[1] == "fits" for line in lines)
    assert main(["info", "faster_rcnnn"]) == 1  # neither model, head nor backbone: the model error
    assert "unknown model 'faster_rcnnn'" in capsys.readouterr().err


# ---- learning -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_small_unet_learns_the_shapes(tmp_path):
    """Fails if learning is broken: a resnet18 U-Net must fit 6 shape images (eval-mode mIoU)."""
    torch.manual_seed(0)
    root = make_shapes(tmp_path / "shapes", layout="masks", n_train=6, n_val=2, image_size=64, seed=0)
    model = zoo.load("unet", task="seg", backbone="resnet18", num_classes=4, encoder_depth=4,
                     decoder_channels=(64, 32, 16, 16))
    task = model.task_impl
    ds = task.read_dataset(root, split="train", train=False, model=model, image_size=64)
    batch = task.collate([ds[i] for i in range(len(ds))])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for step in range(1, 121):
        model.train()
        loss = task.loss(model, batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                metrics = task.new_metrics(ds.class_names)
                metrics.update(task.forward_eval(model, batch), batch)
            history.append(round(metrics.compute()["miou"], 3))
            if history[-1] >= 0.85:
                break
    print(f"U-Net mIoU every 10 steps: {history}")
    assert history[-1] >= 0.85, history
    assert history[0] < 0.5  # it started from not knowing
