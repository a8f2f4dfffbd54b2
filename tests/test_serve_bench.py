"""``benchmarks/bench_serve.py --tiny``: the real ``zoo serve`` under concurrent clients, both settings.

No speed is asserted (a CI machine's figures mean nothing); the test checks that both settings ran
without errors, that batching off really ran batches of one and batching on may gather more, and
that the printed lines and the JSON agree.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="zoo serve's tests need the serve extra: pip install -e \".[serve]\"")

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^batching (on|off) \(max-batch (\d+), max-wait [0-9.]+ ms\): ([0-9.]+) req/s, p50 ([0-9.]+) ms, "
                  r"p90 ([0-9.]+) ms, p99 ([0-9.]+) ms, mean batch ([0-9.]+), server CPU ([0-9.]+|n/a) ms/request "
                  r"\(4 clients, 1 s, (\d+) requests, "
                  r"errors 0\)$", re.M)


def test_bench_serve_tiny_runs_both_settings(tmp_path):
    out = tmp_path / "serve.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--tiny", "--seconds", "1",
                           "--warmup-seconds", "0.5", "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = {m.group(1): m for m in LINE.finditer(proc.stdout)}
    assert set(lines) == {"on", "off"}, proc.stdout
    data = json.loads(out.read_text())
    for setting, m in lines.items():
        r = data[setting]
        assert r["errors"] == {} and r["requests"] == int(m.group(9)) > 0
        assert float(m.group(3)) == pytest.approx(r["requests_per_s"], abs=0.06)
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        if sys.platform.startswith("linux"):  # read from /proc: the server's own CPU time
            assert r["server_cpu_ms_per_request"] > 0 and float(m.group(8)) == pytest.approx(
                r["server_cpu_ms_per_request"], abs=0.006)
    assert data["off"]["server_batches"]["batch_size_histogram"].keys() == {"1"}
    assert int(lines["on"].group(2)) == 16 and max(map(int, data["on"]["server_batches"]["batch_size_histogram"])) <= 16
    assert math.isclose(data["speedup"], data["on"]["requests_per_s"] / data["off"]["requests_per_s"])
    assert re.search(r"goal \(>= 2x requests/s, p99 < 2x p50 with batching\): (met|NOT met)", proc.stdout)
    assert "[tiny]" in proc.stdout.splitlines()[0]
