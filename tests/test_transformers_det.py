"""zoo_transformers' detectors (RT-DETR, RT-DETRv2, DETR, Conditional/Deformable DETR): catalog, hub files,
losses, training through the zoo's Trainer, export, conformance. Tiny configs passed as builder options;
nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

import zoo_core as zoo
from det_helpers import det_data  # noqa: F401  (a fixture)
from zoo_core.errors import OptionError, WeightsError

transformers = pytest.importorskip("transformers")

QUIET = {"num_workers": 0, "verbose": False, "tensorboard": False, "progress_bar": False, "plots": False}
TINY_RT = {"config": {"d_model": 32, "encoder_hidden_dim": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                      "decoder_in_channels": [32, 32, 32], "encoder_in_channels": [32, 64, 128], "decoder_layers": 2,
                      "num_queries": 10, "num_denoising": 4, "encoder_attention_heads": 2,
                      "decoder_attention_heads": 2},
           "backbone_config": {"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}}
_RESNET = {"model_type": "resnet", "embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1],
           "layer_type": "basic", "out_features": ["stage4"]}
TINY_DETR = {"config": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 64,
                        "decoder_ffn_dim": 64, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                        "num_queries": 10},
             "backbone_config": _RESNET}
TINY_DEFORMABLE = {"config": {**TINY_DETR["config"], "decoder_layers": 2, "encoder_n_points": 2, "decoder_n_points": 2},
                   "backbone_config": {**_RESNET, "out_features": ["stage2", "stage3", "stage4"]}}
#: (zoo name, tiny options, the transformers image processor whose post-processing ours must equal)
FAMILIES = [("rtdetr_r18vd", TINY_RT, "RTDetrImageProcessor"), ("rtdetr_v2_r18vd", TINY_RT, "RTDetrImageProcessor"),
            ("detr_resnet50", TINY_DETR, "DetrImageProcessor"),
            ("conditional_detr_resnet50", TINY_DETR, "ConditionalDetrImageProcessor"),
            ("deformable_detr", TINY_DEFORMABLE, "DeformableDetrImageProcessor")]


def tiny(name: str, opts: dict, **kw) -> "zoo.ZooModel":
    model = zoo.load(name, task="det", num_classes=kw.pop("num_classes", 3), seed=kw.pop("seed", 0), **opts, **kw)
    model.preprocess = model.preprocess.with_size(64)
    model.net.set_input_size((64, 64))
    return model


# ---- catalog -----------------------------------------------------------------------------------
def test_catalog_names_hub_weights_and_coco_labels():
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    from zoo_transformers.det_catalog import COCO_80, COCO_91

    names = set(zoo.list_models(task="det"))
    assert {"rtdetr_r18vd", "rtdetr_v2_r18vd", "detr_resnet50", "conditional_detr_resnet50", "deformable_detr"} <= names
    rt = {w.tag: w for w in zoo.list_weights("rtdetr_r18vd")}["coco"]
    assert rt.url == "https://huggingface.co/PekingU/rtdetr_r18vd/resolve/main/model.safetensors"
    assert rt.num_classes == 80 and "Apache-2.0" in rt.license
    detr = {w.tag: w for w in zoo.list_weights("detr_resnet50")}["coco"]
    assert detr.url == "https://huggingface.co/facebook/detr-resnet-50/resolve/main/model.safetensors"
    assert list(COCO_91) == ["N/A" if c in ("__background__", "N/A") else c for c in
                           FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]]
    assert len(COCO_80) == 80 and detr.num_classes == 91


def test_hub_weights_without_network_fail_at_once_naming_the_file():
    with pytest.raises(WeightsError, match=r"ZOO_OFFLINE=1.*huggingface\.co/PekingU/rtdetr_r18vd.*weights='/path/to/"):
        zoo.load("rtdetr_r18vd", task="det", weights="coco", **TINY_RT)


def test_options_that_would_download_or_are_unknown_are_refused():
    with pytest.raises(OptionError, match="use_pretrained_backbone"):
        zoo.load("detr_resnet50", task="det", backbone_config={"use_pretrained_backbone": True})
    with pytest.raises(OptionError, match="d_modle.*d_model"):
        zoo.load("rtdetr_r18vd", task="det", config={"d_modle": 32})
    with pytest.raises(OptionError, match="names a file or hub"):
        zoo.load("detr_resnet50", task="det", backbone_config={"backbone": "hf-hub:someone/trunk"})
    with pytest.raises(OptionError, match="num_labels"):
        zoo.load("detr_resnet50", task="det", config={"num_labels": 5})


# ---- weights and outputs equal transformers' own -------------------------------------------------
@pytest.mark.parametrize("name, opts, processor", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_a_transformers_saved_file_loads_exactly_and_predicts_as_transformers_does(tmp_path, name, opts, processor):
    """save_pretrained writes the hub's key layout (transformers 5 renames on load, ties stored once): the zoo
    loads it with the same renamings, and its boxes/scores/labels equal the image processor's post-processing."""
    ref = tiny(name, opts)
    torch.manual_seed(1)
    hf = type(ref.net.hf)(ref.net.hf.config).eval()  # another random init: the "hub" model
    hf.save_pretrained(tmp_path)
    model = tiny(name, opts, weights=str(tmp_path / "model.safetensors")).eval()
    assert not model.weights_report.missing and not model.weights_report.unexpected
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.net(list(images))
        pixels, _ = model.net.prepare(images)
        theirs = getattr(transformers, processor)().post_process_object_detection(
            hf(pixel_values=pixels), threshold=-1.0, target_sizes=[(64, 64)] * 2)
    for a, b in zip(ours, theirs):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["scores"], b["scores"])
        torch.testing.assert_close(a["boxes"], b["boxes"].clamp(0, 64))


@pytest.mark.parametrize("name, opts", [("rtdetr_r18vd", TINY_RT), ("detr_resnet50", TINY_DETR)])
def test_loss_terms_add_up_to_the_models_own_loss(name, opts):
    """The Trainer sums the dict: its sum must be transformers' loss (DETR weighs its terms; RT-DETR's are
    weighted already); DETR's cardinality_error, a metric without gradient, is left out."""
    model = tiny(name, opts).train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0], [0.0, 0.0, 8.0, 8.0]]), "labels": torch.tensor([0, 2])}]
    torch.manual_seed(0)
    terms = model.net(images, targets)
    torch.manual_seed(0)
    pixels, _ = model.net.prepare(images)
    from zoo_transformers.det_outputs import hf_labels

    out = model.net.hf(pixel_values=pixels, labels=hf_labels(targets, [(64, 64)] * 2))
    assert "cardinality_error" not in terms and "loss_hf" not in terms
    torch.testing.assert_close(sum(terms.values()), out.loss)
    assert set(model.task_impl.loss(model, zoo.task.Batch(inputs=images, targets=targets, meta=[]))) >= set(terms)


def test_targets_become_normalised_cxcywh_of_each_image():
    from zoo_transformers.det_outputs import hf_labels

    labels = hf_labels([{"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "labels": torch.tensor([4])}], [(80, 100)])
    torch.testing.assert_close(labels[0]["boxes"], torch.tensor([[0.3, 0.5, 0.4, 0.5]]))
    assert labels[0]["class_labels"].tolist() == [4]


# ---- training, evaluation, prediction, export ----------------------------------------------------
@pytest.mark.slow
def test_rtdetr_trains_evaluates_and_predicts_through_the_zoo(det_data, tmp_path):
    model = tiny("rtdetr_r18vd", TINY_RT, class_names=["circle", "square", "triangle"], num_classes=None)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    result = zoo.Trainer(max_epochs=4, batch_size=2, lr=1e-3, image_size=64, out_dir=tmp_path / "run", seed=0,
                         **QUIET).fit(model, det_data)
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    losses = [float(r["train_loss"]) for r in rows]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    assert {"train_loss_vfl", "train_loss_bbox", "train_loss_giou", "train_loss_aux"} <= set(rows[0]), rows[0]
    assert result.epochs == 4
    changed = [k for k, v in model.net.state_dict().items() if not torch.equal(before[k], v)]
    assert any(k.startswith("hf.model.decoder.class_embed") for k in changed)
    assert any(k.startswith("hf.model.backbone") for k in changed)
    report = zoo.evaluate(model, det_data, num_workers=0, plots=False)
    assert 0.0 <= report["map"] <= 1.0
    preds = model.predict([torch.rand(3, 96, 80)], score_threshold=0.0)
    assert isinstance(preds[0], zoo.Detections) and preds[0].boxes.shape[1] == 4
    assert float(preds[0].boxes[:, 2].max()) <= 80 and set(preds[0].names) <= {"circle", "square", "triangle"}


@pytest.mark.slow
@pytest.mark.parametrize("name, opts", [("rtdetr_r18vd", TINY_RT), ("detr_resnet50", TINY_DETR),
                                        ("conditional_detr_resnet50", TINY_DETR)])
def test_onnx_export_matches_eager_and_torchscript_is_refused(tmp_path, name, opts):
    model = tiny(name, opts).eval()
    with torch.no_grad():  # distinct proposal scores: an untrained RT-DETR's ties would be broken otherwise by ORT
        for p in model.net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.5)
    result = model.export("onnx", tmp_path / "det.onnx")
    assert result.max_abs_diff <= result.tolerance and (tmp_path / "det.onnx").exists()
    from zoo_core.errors import IncompatibleError

    with pytest.raises(IncompatibleError, match="TorchScript cannot"):
        model.export("torchscript", tmp_path / "det.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["transformers:rtdetr_r18vd", "transformers:detr_resnet50"])
def test_catalog_entries_conform(name):
    from zoo_core.testing import check_spec

    report = check_spec(name, checks=["contract"])
    assert report.ok, str(report)
    assert {r.check for r in report.results if r.status == "pass"} >= {"builder", "build", "contract"}


def test_rtdetr_from_scratch_keeps_pytorchs_batchnorm_init_so_its_anchors_do_not_all_tie():
    """transformers draws RT-DETR's encoder BatchNorm scales from N(0, 0.01): the untrained encoder's
    output vanished (~1e-10) and every anchor scored alike. The zoo restores scale 1 outside the trunk."""
    model = tiny("rtdetr_r18vd", TINY_RT).eval()
    norms = [(n, m) for n, m in model.net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    outside = [m for n, m in norms if not n.startswith("hf.model.backbone.")]
    assert outside and all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in outside)
    scores = []
    hook = model.net.hf.model.enc_score_head.register_forward_hook(lambda m, a, out: scores.append(out.max(-1).values))
    with torch.no_grad():
        model.net(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    hook.remove()
    assert torch.unique(scores[0]).numel() > scores[0].numel() // 2


def test_deformable_detr_onnx_export_is_refused_with_the_reason(tmp_path):
    """Its deformable attention becomes a GridSample ONNX Runtime cannot run: refused, not a broken file."""
    from zoo_core.errors import IncompatibleError

    model = zoo.load("deformable_detr", task="det", num_classes=3)
    assert "onnx" not in model.export_formats
    with pytest.raises(IncompatibleError, match="GridSample"):
        model.export("onnx", tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()
