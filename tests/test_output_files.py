"""Exports and evaluation plots replace only files the zoo wrote there (audit of issue 12's file rule).

Before: ``zoo export ... OUT`` and ``zoo eval --out DIR`` silently replaced a user's own file of the same name.
"""

from __future__ import annotations

import pytest

import zoo_core as zoo
from trainer_toy import toy  # noqa: F401  (fixture)
from zoo_core.cli import main
from zoo_core.run_files import ForeignFileError, Manifest


def test_an_export_never_replaces_a_file_the_zoo_did_not_write(tmp_path, capsys):
    model = zoo.load("resnet18", task="cls", num_classes=2, seed=0)
    model.set_image_size(32)
    mine = tmp_path / "model.onnx"
    mine.write_text("my own notes")
    with pytest.raises(ForeignFileError, match=r"model\.onnx \(not written by the zoo\).*overwrite=True"):
        model.export("onnx", mine)
    assert mine.read_text() == "my own notes"
    model.save(tmp_path / "saved")
    assert main(["export", str(tmp_path / "saved"), str(mine), "--static-batch", "--image-size", "32"]) == 1
    assert "not written by the zoo" in capsys.readouterr().err and mine.read_text() == "my own notes"
    ours = tmp_path / "ours.onnx"
    model.export("onnx", ours)
    model.export("onnx", ours)  # its own earlier export: replaced without a word
    assert Manifest.read(tmp_path).owns("ours.onnx")
    ours.write_bytes(ours.read_bytes() + b"\0")  # changed since: the user's now
    with pytest.raises(ForeignFileError, match="changed since the zoo wrote it"):
        model.export("onnx", ours)
    assert model.export("onnx", mine, overwrite=True).path == mine and mine.read_bytes()[:4] != b"my o"


def test_evaluation_plots_never_replace_a_users_file(toy, tmp_path):
    model = zoo.load("toynet", task="toytrain")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "toy_accuracy.png").write_text("my plot")
    with pytest.raises(ForeignFileError, match=r"toy_accuracy\.png \(not written by the zoo\)"):
        zoo.evaluate(model, "toy:n=8", batch_size=4, out_dir=out, num_workers=0)
    assert (out / "toy_accuracy.png").read_text() == "my plot" and sorted(p.name for p in out.iterdir()) == \
        ["toy_accuracy.png"]
    other = tmp_path / "eval2"
    first = zoo.evaluate(model, "toy:n=8", batch_size=4, out_dir=other, num_workers=0)
    again = zoo.evaluate(model, "toy:n=8", batch_size=4, out_dir=other, num_workers=0)  # its own plots: replaced
    assert first.plots == again.plots == [other / "toy_accuracy.png"] and again.plots[0].is_file()
    report = zoo.evaluate(model, "toy:n=8", batch_size=4, out_dir=out, num_workers=0, overwrite=True)
    assert report.plots[0].read_bytes()[:4] == b"\x89PNG"
