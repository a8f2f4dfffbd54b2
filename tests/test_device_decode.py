"""decode="device": workers read bytes, EncodedBatch.to decodes and augments (on the CPU here).

Measured on the CPU (torchvision's libjpeg-turbo vs PIL's, uint8 antialiased resize vs PIL's resize):
eval and train tensors agree to < 0.001 of a uint8 level (PIL and torchvision decode identically
here); the tests allow 1.5 levels, what a different JPEG decoder (nvjpeg) may cost.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo_core as zoo
from zoo_core.errors import DataError
from zoo_core.train.data import SeededDataset, base_dataset
from zoo_tasks.classification import ClassificationTask
from zoo_tasks.device_decode import DeviceDecoder, EncodedBatch, EncodedImage

ROOT = Path(__file__).resolve().parents[1]


def write_images(root: Path, n: int = 3, size: tuple[int, int] = (75, 100)) -> Path:
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            ramp = np.linspace(0, 180, size[1])[None, :, None] + c * 40
            arr = np.clip(rng.random((*size, 3)) * 60 + ramp, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.load("resnet18", task="cls", num_classes=2)


def level_diff(a: torch.Tensor, b: torch.Tensor, model) -> float:
    std = torch.tensor(model.preprocess.std).view(1, 3, 1, 1)
    return float(((a - b) * std * 255).abs().max())


def both_batches(root: Path, model, *, train: bool) -> tuple[torch.Tensor, torch.Tensor, EncodedBatch]:
    task = ClassificationTask()
    out = []
    for mode in ("pil", "device"):
        ds = ClassificationTask(decode=mode).read_dataset(root, split="train", train=train, model=model, image_size=48)
        seeded = SeededDataset(ds, 0)
        out.append(task.collate([seeded[(1, i)] for i in range(len(ds))]))
    assert isinstance(out[1], EncodedBatch)
    return out[0].inputs, out[1].to("cpu").inputs, out[1]


@pytest.mark.parametrize("train", [False, True])
def test_device_path_gives_the_pil_tensors(tmp_path, model, train):
    pil, dev, encoded = both_batches(write_images(tmp_path), model, train=train)
    assert pil.shape == dev.shape == (6, 3, 48, 48)
    assert level_diff(pil, dev, model) <= 1.5
    if train:  # the same crops and flips were drawn, from the same per-sample seeds
        assert len({it.crop for it in encoded.inputs}) > 1 and any(it.flip for it in encoded.inputs)
    assert all(it.encoded for it in encoded.inputs)  # plain JPEGs travel as bytes


def test_png_cmyk_and_rotated_files_fall_back_to_pil(tmp_path, model):
    root = write_images(tmp_path)
    img = Image.open(root / "cat" / "0.jpg")
    img.save(root / "cat" / "png.png")
    img.convert("CMYK").save(root / "dog" / "cmyk.jpg")
    pil, dev, encoded = both_batches(root, model, train=False)
    kinds = {Path(it.path).name: it.encoded for it in encoded.inputs}
    assert kinds["png.png"] is False and kinds["cmyk.jpg"] is False and kinds["0.jpg"] is True
    assert level_diff(pil, dev, model) <= 1.5


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_bad_files_raise_the_named_data_error_in_evaluation(tmp_path, model, damage):
    root = write_images(tmp_path)
    bad = root / "dog" / "1.jpg"
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\xff\xd8not a jpeg\xff\xd9"}[damage])
    ds = ClassificationTask(decode="device").read_dataset(root, split="train", train=False, model=model)
    index = [str(p) for p, _ in ds.samples].index(str(bad))
    with pytest.raises(DataError, match=re.escape(str(bad))):
        ds[index]


def test_a_file_failing_on_the_device_is_named(tmp_path, model):
    ds = ClassificationTask(decode="device").read_dataset(write_images(tmp_path), split="train", train=False,
                                                          model=model)
    good, _, _ = ds[0]
    broken = EncodedImage(torch.frombuffer(bytearray(b"\xff\xd8\xff\xd9"), dtype=torch.uint8), "/data/broken.jpg",
                          good.decoder)
    batch = EncodedBatch(inputs=[good, broken], targets=torch.tensor([0, 1]), meta=[{}, {}], decoder=good.decoder)
    with pytest.raises(DataError, match="/data/broken.jpg"):
        batch.to("cpu")


def test_batches_survive_pickling_with_one_decoder(tmp_path, model):
    ds = ClassificationTask(decode="device").read_dataset(write_images(tmp_path), split="train", train=True,
                                                          model=model)
    batch = ClassificationTask().collate([ds[i] for i in range(4)])
    back = pickle.loads(pickle.dumps(batch))  # what a DataLoader worker sends
    assert isinstance(back.decoder, DeviceDecoder) and all(it.decoder is back.decoder for it in back.inputs)
    assert torch.equal(back.to("cpu").inputs, batch.to("cpu").inputs)


def test_training_with_device_decode_equals_the_pil_run(tmp_path, model):
    root = write_images(tmp_path / "data", n=4)
    finals = []
    for mode in ("pil", "device"):
        m = zoo.load("resnet18", task="cls", num_classes=2)
        m.load_state_dict(model.state_dict())
        m.config["task_options"] = {"decode": mode}
        trainer = zoo.Trainer(max_epochs=1, batch_size=4, image_size=32, num_workers=0, seed=0, deterministic=True,
                              out_dir=str(tmp_path / mode), tensorboard=False, plots=False, verbose=False,
                              progress_bar=False, optimizer="sgd", lr=0.05)
        result = trainer.fit(m, root)
        finals.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
        assert result is not None
        assert type(base_dataset(trainer.train_loader)).__name__ == ("EncodedFolderDataset" if mode == "device"
                                                                      else "ImageFolderDataset")
    # SGD (Adam's first steps are ~lr * sign(grad): a 1e-5 input change can flip a near-zero gradient's sign)
    moved = float((finals[0] - torch.cat([p.detach().flatten() for p in model.parameters()])).abs().max())
    assert moved > 0.01  # it trained
    assert float((finals[0] - finals[1]).abs().max()) < 1e-3 * moved  # measured: ~7e-5 x the update


def test_benchmark_script_tiny_prints_parseable_ratios(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_data.py"), "--tiny",
                           "--cache", str(tmp_path / "jpegs")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rates = dict(re.findall(r"^(synthetic|torchvision ImageFolder\+PIL|zoo PIL workers|zoo device decode) "
                            r"([\d.]+) img/s", proc.stdout, re.M))
    assert len(rates) == 4 and all(float(v) > 0 for v in rates.values()), proc.stdout
    assert re.search(r"zoo device decode / synthetic [\d.]+", proc.stdout), proc.stdout
