"""Benchmarks and ``zoo bench`` on the CPU at tiny sizes: the lines parse, the numbers are sane.

No timing is asserted (only that throughputs are positive and finite); FLOP counts are checked
against hand-computed values.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo_core.bench import flops as F
from zoo_core.bench.memory import MemoryReading, PeakMemory
from zoo_core.bench.syncs import HostSyncCounter
from zoo_core.bench.timing import Timer
from zoo_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"bench_cls_train.py": 2, "bench_infer.py": 2, "bench_det_train.py": 1, "bench_seg_train.py": 2,
           "bench_step_overhead.py": 1}
NUM = r"([0-9]+(?:\.[0-9]+)?)"
LINE = re.compile(rf"^(?P<what>.+): plain {NUM} img/s, zoo {NUM} img/s, ratio {NUM}, "
                  rf"peak memory plain {NUM} MiB \({NUM}/img\) zoo {NUM} MiB \({NUM}/img\)$")


@pytest.fixture(scope="module")
def script_outputs():
    """Every script with ``--device cpu --tiny``, run side by side (each on one thread)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / name), "--device", "cpu", "--tiny"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for name in SCRIPTS}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name} failed:\n{stderr[-3000:]}"
        out[name] = stdout
    return out


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_script_prints_a_parsable_comparison(script_outputs, script):
    lines = [m for m in map(LINE.match, script_outputs[script].splitlines()) if m]
    assert len(lines) == SCRIPTS[script], script_outputs[script]
    for m in lines:
        plain, zoo, ratio, pm, pmi, zm, zmi = (float(v) for v in m.groups()[1:])
        assert all(math.isfinite(v) and v > 0 for v in (plain, zoo, ratio, pm, pmi, zm, zmi)), m.group(0)
        rounding = zoo / plain * (0.05 / plain + 0.05 / zoo) + 0.0005  # the line prints 1 decimal (ratio 3)
        assert abs(ratio - zoo / plain) <= rounding, m.group(0)
        assert pmi == pytest.approx(pm / 2, abs=0.6) and zmi == pytest.approx(zm / 2, abs=0.6)  # batch 2
    assert "precision 32" in script_outputs[script] and "[tiny]" in script_outputs[script]
    assert "RSS" in script_outputs[script]  # CPU memory is labelled as the process's resident set
    if script == "bench_step_overhead.py":  # the overhead follows from the two throughputs
        (m,) = lines
        got = re.search(r"Trainer overhead ([+-][0-9.]+)% of the step", script_outputs[script])
        assert got and float(got.group(1)) == pytest.approx(100 * (float(m.group(2)) / float(m.group(3)) - 1), abs=0.6)


def bench_table(capsys, *argv: str) -> dict[str, list[str]]:
    assert main(["bench", *argv, "--device", "cpu", "--batch-size", "2", "--image-size", "64", "--steps", "1",
                 "--warmup", "1", "--precision", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split("  ")[0].strip(): line.split()[-2:] for line in out[2:7]}
    rows["title"] = [out[0]]
    return rows


@pytest.mark.parametrize("argv, task", [
    (["resnet18", "--num-classes", "3"], "classification"),
    (["fasterrcnn_mobilenet_v3_large_320_fpn", "--task", "det", "--num-classes", "3"], "detection"),
    (["unet", "--task", "seg", "--num-classes", "3", "--option", "backbone=resnet18", "--peak-tflops", "1"],
     "segmentation"),
])
def test_zoo_bench_prints_throughput_memory_flops_and_mfu(capsys, one_thread, argv, task):
    rows = bench_table(capsys, *argv)
    assert f"({task})" in rows["title"][0] and "on cpu, batch 2" in rows["title"][0]
    train, infer = (float(v) for v in rows["images/s"])
    assert train > 0 and infer > 0 and math.isfinite(train) and math.isfinite(infer)
    gflop_train, gflop_infer = (float(v) for v in rows["GFLOP/img"])
    assert gflop_train > gflop_infer > 0  # a training step costs 3x the forward pass
    if task == "classification":  # resnet18 at 64 px: 1.82 GMAC x (64/224)^2 x 2 FLOP per MAC
        assert gflop_infer == pytest.approx(2 * 1.82 * (64 / 224) ** 2, rel=0.05)
        assert gflop_train == pytest.approx(3 * gflop_infer, rel=0.05)
    assert all(cell.endswith("RSS") or cell == "MiB" for cell in rows["peak memory"])
    if "--peak-tflops" in argv:  # MFU = FLOP/s achieved / peak: positive, a percentage
        assert all(cell.endswith("%") and float(cell[:-1]) > 0 for cell in rows["MFU"])
    else:
        assert rows["MFU"] == ["n/a", "n/a"]


def test_zoo_bench_mode_and_bad_arguments(capsys, one_thread):
    assert main(["bench", "resnet18", "--num-classes", "3", "--device", "cpu", "--batch-size", "2", "--image-size",
                 "32", "--steps", "1", "--warmup", "0", "--precision", "32", "--mode", "infer"]) == 0
    out = capsys.readouterr().out
    assert "infer" in out.splitlines()[1] and "train" not in out.splitlines()[1]
    assert main(["bench", "resnet18", "--steps", "0", "--device", "cpu"]) == 1
    assert "--steps" in capsys.readouterr().err


def test_flop_counter_matches_hand_counts():
    linear, conv = torch.nn.Linear(10, 20), torch.nn.Conv2d(3, 8, 3, padding=1)
    assert F.count_flops(lambda: linear(torch.randn(3, 10))) == 2 * 3 * 10 * 20
    assert F.count_flops(lambda: conv(torch.randn(1, 3, 16, 16))) == 2 * (8 * 16 * 16) * (3 * 3 * 3)
    assert F.count_flops(lambda: torch.relu(torch.randn(100))) == 0  # element-wise work is not counted


def test_peak_table_and_mfu(monkeypatch):
    cuda = torch.device("cuda")
    assert F.peak_tflops("cpu", "bf16") is None and F.peak_tflops("cpu", "bf16", override=100) == 100
    names = {"NVIDIA H100 80GB HBM3": 989.0, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.0,
             "NVIDIA A100-SXM4-80GB": 312.0, "Some Future GPU": None}
    for name, peak in names.items():
        monkeypatch.setattr(F, "device_name", lambda d, n=name: n)
        assert F.peak_tflops(cuda, "bf16") == peak
    monkeypatch.setattr(F, "device_name", lambda d: "NVIDIA A100-PCIE-40GB")
    assert F.peak_tflops(cuda, "16-mixed") == 312.0 and F.peak_tflops(cuda, "32") in (156.0, 19.5)
    # the anchor: resnet50 trains at ~24.6 GFLOP an image; 3,391 img/s on 989 TFLOP/s is ~8.4%
    assert F.mfu(24.6e9, 3391, 989.0) == pytest.approx(0.0843, abs=1e-3)
    assert F.mfu(None, 100, 989.0) is None and F.mfu(1e9, 100, None) is None


def test_timer_and_memory_readings():
    timer = Timer("cpu")
    with pytest.raises(RuntimeError, match="before"):
        timer.stop()
    timer.start()
    with pytest.raises(RuntimeError, match="not stopped"):
        timer.seconds()
    timer.stop()
    assert timer.seconds() >= 0
    with PeakMemory("cpu") as peak:
        block = torch.ones(64, 1024, 1024, dtype=torch.uint8)  # 64 MiB touched
        block += 1
    assert peak.reading.kind in ("RSS", "n/a")
    if peak.reading.bytes is not None:
        assert peak.reading.mib >= 64
    assert MemoryReading(None, "n/a").format(8) == "n/a"
    assert MemoryReading(2 * 1024 ** 2 * 8, "cuda").format(8) == "16 MiB (2.0/img)"


def test_host_sync_counter_sees_reads_and_masks_only():
    x = torch.randn(6)
    with HostSyncCounter() as syncs:
        y = (x * 2 + 1).relu().sum()  # no read
    assert syncs.count == 0
    with HostSyncCounter() as syncs:
        y.item()
        x[x > 0]
        if x.sum() > 0:
            pass
    assert syncs.ops == {"_local_scalar_dense": 2, "index(bool mask)": 1}
    with HostSyncCounter(device="cuda") as syncs:  # host tensors are read without waiting for a GPU
        y.item()
    assert syncs.count == 0


def test_export_parity_script_prints_every_declared_format_within_tolerance():
    """benchmarks/export_parity.py: one line per declared format, each diff finite and under its tolerance."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "export_parity.py"), "--models", "resnet18",
                           "fasterrcnn_mobilenet_v3_large_320_fpn", "--image-size", "32"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pattern = re.compile(r"^(\S+) (\w+): max \|exported - eager\| (\S+) \(tolerance (\S+)\), "
                         r"batches (.+), exporter (.+)$")
    rows = [m.groups() for m in map(pattern.match, proc.stdout.splitlines()) if m]
    assert [(name, fmt) for name, fmt, *_ in rows] == [
        ("resnet18", "onnx"), ("resnet18", "torchscript"), ("resnet18", "torch_export"),
        ("fasterrcnn_mobilenet_v3_large_320_fpn", "onnx")], proc.stdout
    for name, fmt, diff, tol, batches, exporter in rows:
        assert 0 <= float(diff) <= float(tol), (name, fmt, diff, tol)
    assert rows[0][4] == "(2, 1, 3)" and rows[-1][4] == "(1,)"  # dynamic batch checked; detector at batch 1
