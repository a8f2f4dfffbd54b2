"""The torchvision classification plugin: the static table, the builder, heads, preprocessing, weights."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import torchvision

import zoo_core as zoo
from zoo_core.registry import get_registry
from zoo_torchvision import classification_specs as specs
from zoo_torchvision import tv_weights
from zoo_torchvision.classification import build


def _spec(name: str):
    return get_registry().resolve("model", f"torchvision:{name}")


def test_table_matches_installed_torchvision() -> None:
    """Fails when torchvision adds, drops or renames a model or a weights tag: regenerate the table."""
    assert [row[0] for row in specs.MODELS] == sorted(torchvision.models.list_models(module=torchvision.models))
    assert list(specs.MODELS) == tv_weights.table_rows()
    for name, _, _, tags in specs.MODELS:
        enum = torchvision.models.get_model_weights(name)
        assert tags.split()[0] == enum.DEFAULT.name
        assert set(tags.split()) == {w.name for w in enum} - set(specs.EXCLUDED_TAGS)


def test_every_model_is_registered_for_classification() -> None:
    names = set(zoo.list_models(task="cls", plugin="torchvision"))
    assert {row[0] for row in specs.MODELS} <= names
    assert {"resnet50", "vit_b_16", "swin_t", "convnext_tiny", "efficientnet_b0", "mobilenet_v3_small",
            "regnet_y_400mf", "densenet121"} <= names
    spec = _spec("vit_h_14")
    assert spec.priority == 30 and spec.tasks == ("classification", "multilabel_classification")  # one network
    assert spec.input_size == (3, 518, 518)
    assert spec.weights == ("IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1")
    assert zoo.info("resnet50").default == "torchvision:resnet50"  # torchvision wins the short name over timm


def test_specs_module_imports_no_torch() -> None:
    code = ("import sys, zoo_torchvision.classification_specs as s; "
            "print(len(s.MODELS), 'torch' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(specs.MODELS)), "False", "False"]


def _smallest_per_family() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, family, _, _ in specs.MODELS:
        out.setdefault(family, name)
    out.update(regnet="regnet_x_400mf", vit="vit_b_32", swin="swin_t", efficientnet="efficientnet_b0")
    return out


@pytest.mark.parametrize("family,name", sorted(_smallest_per_family().items()))
def test_head_prefix_is_the_classifier(family: str, name: str) -> None:
    """The family's head prefix names exactly the tensors whose first dim is num_classes."""
    spec = _spec(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "regnet":  # regnet's width computation cannot run on the meta device
            built = build(spec, task="classification", num_classes=7)
        else:
            with torch.device("meta"):
                built = build(spec, task="classification", num_classes=7)
    assert built.head == (specs.HEADS[family],) and built.num_classes == 7
    sized = {k.rsplit(".", 1)[0] for k, v in built.net.state_dict().items() if v.dim() and v.shape[0] == 7}
    assert sized == {specs.HEADS[family]}


def test_builder_resnet18_preprocess_and_head() -> None:
    model = zoo.load("torchvision:resnet18", task="cls", num_classes=10)
    assert model.net.fc.out_features == 10 and model.head_prefixes == ("fc",)
    pre = model.preprocess
    assert pre.input_size == (224, 224) and pre.interpolation == "bilinear"
    assert pre.crop_pct == pytest.approx(224 / 256, abs=1e-4)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx((0.229, 0.224, 0.225))
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    # no weights were loaded and nothing was downloaded: a random init
    assert model.weights_report is None and model.provenance.get("weights") is None


def test_preprocess_follows_the_weights_tag() -> None:
    v1 = tv_weights.describe("efficientnet_b1", "IMAGENET1K_V1").preprocess
    v2 = tv_weights.describe("efficientnet_b1", "IMAGENET1K_V2").preprocess
    assert v1.input_size == v2.input_size == (240, 240)
    assert v1.interpolation == "bicubic" and v1.crop_pct == pytest.approx(240 / 256, abs=1e-4)
    assert v2.interpolation == "bilinear" and v2.crop_pct == pytest.approx(240 / 255, abs=1e-4)


def test_pretrained_description() -> None:
    w = tv_weights.describe("resnet18", "IMAGENET1K_V1")
    assert w.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert w.filename == "resnet18-f37072fd.pth" and w.hash_prefix == "f37072fd"
    assert w.num_classes == 1000 and w.class_names[0] == "tench" and len(w.class_names) == 1000
    assert w.metrics["ImageNet-1K"]["acc@1"] == pytest.approx(69.758) and w.license
    swag = tv_weights.describe("vit_h_14", "IMAGENET1K_SWAG_E2E_V1")
    assert "SWAG" in swag.license and swag.preprocess.input_size == (518, 518)
    infos = tv_weights.weights_info(_spec("resnet50"))
    assert [i.tag for i in infos] == ["IMAGENET1K_V2", "IMAGENET1K_V1"]
    assert infos[0].filename == "resnet50-11ad3fa6.pth" and infos[0].hash_prefix == "11ad3fa6"
    rows = zoo.list_weights("resnet50")  # the kernel's helper reads weights_info of every provider
    tv = [r for r in rows if r.model == "torchvision:resnet50"]
    assert [r.tag for r in tv] == ["IMAGENET1K_V2", "IMAGENET1K_V1"] and tv[0].default and not tv[0].note
    assert tv[0].hash_prefix == "11ad3fa6" and any(r.model == "timm:resnet50" and r.url for r in rows)


def test_vit_is_built_for_its_weights_input_size() -> None:
    """ViT position embeddings depend on the input size: SWAG weights at 384 px, V1 at 224 px."""
    spec = _spec("vit_b_16")
    with torch.device("meta"):
        swag = build(spec, task="classification", pretrained="IMAGENET1K_SWAG_E2E_V1")
        v1 = build(spec, task="classification")
        small = build(spec, task="classification", num_classes=3, image_size=32)
    assert swag.net.encoder.pos_embedding.shape[1] == (384 // 16) ** 2 + 1
    assert swag.pretrained.preprocess.input_size == (384, 384) and swag.num_classes == 1000
    assert v1.net.encoder.pos_embedding.shape[1] == (224 // 16) ** 2 + 1
    assert small.net.encoder.pos_embedding.shape[1] == 5 and small.preprocess.input_size == (32, 32)


def test_googlenet_forward_is_plain_logits_and_aux_weights_load(tmp_path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True,
                                                 init_weights=True, num_classes=5).eval()
    torch.save(reference.state_dict(), tmp_path / "g.pth")
    assert any(k.startswith("aux1.") for k in reference.state_dict())
    model = zoo.load("torchvision:googlenet", task="cls", num_classes=5, weights=tmp_path / "g.pth").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    model.train()
    assert isinstance(model(x), torch.Tensor)  # no aux outputs in training either


def test_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match="torchvision:resnet18 does not accept"):
        zoo.load("torchvision:resnet18", task="cls", bogus_option=1)
