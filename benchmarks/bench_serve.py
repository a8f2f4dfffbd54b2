"""``zoo serve`` under load: requests/s and latency with dynamic batching on vs off, over a real socket.

The server is the real command (``python -m zoo_core serve MODEL --max-batch N``) in its own process;
this process runs ``--clients`` concurrent httpx clients (asyncio, one connection each), each posting
one image (multipart, a JPEG) and waiting for the answer before sending the next (a closed loop: what
N users clicking "predict" do). After ``--warmup-seconds`` it counts the requests that finish within
``--seconds`` and their latencies, then reads the server's ``/metrics`` (the batch sizes it ran).
Twice: batching on (``--max-batch``, ``--max-wait-ms``) and off (``--max-batch 1``), same model (a
classifier saved once, random weights: speed does not depend on them), same image, same clients.

    python benchmarks/bench_serve.py                     # resnet18 at 64 px, 16 clients, 15 s each, on the CPU
    python benchmarks/bench_serve.py --image-size 96 --out serve.json
    python benchmarks/bench_serve.py --tiny              # CI smoke run: a few seconds, numbers mean nothing

The issue's goal: batching on gives >= 2x the requests/s of batching off at 16 clients on the CPU, with
p99 under 2x p50. The last lines say whether this run met it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18", help="classifier to serve (default resnet18)")
    p.add_argument("--image-size", type=int, help="model input size (default 64; tiny 32)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--seconds", type=float, help="measured seconds per setting (default 15; tiny 2)")
    p.add_argument("--warmup-seconds", type=float, help="unmeasured load first (default 3; tiny 1)")
    p.add_argument("--max-batch", type=int, default=16, help="batching on: most images per batch (default 16)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="batching on: longest wait to fill (default 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch threads in the server (default: torch's own)")
    p.add_argument("--only", choices=["on", "off"], help="run one setting only")
    p.add_argument("--out", type=Path, help="write the figures here as JSON")
    p.add_argument("--tiny", action="store_true", help="CI smoke sizes: timm:test_resnet, 32 px, 4 clients, 2 s")
    args = p.parse_args(argv)
    if args.tiny:
        args.model = "timm:test_resnet" if args.model == "resnet18" else args.model
        args.clients = 4 if args.clients == 16 else args.clients
    args.image_size = args.image_size or (32 if args.tiny else 64)
    args.seconds = args.seconds or (2.0 if args.tiny else 15.0)
    args.warmup_seconds = args.warmup_seconds if args.warmup_seconds is not None else (1.0 if args.tiny else 3.0)
    return args


def save_model(args: argparse.Namespace, folder: Path) -> Path:
    import zoo_core as zoo

    model = zoo.load(args.model, task="cls", num_classes=10, seed=0)
    model.set_image_size(args.image_size)
    return model.save(folder / "model")


def test_image(size: int) -> bytes:
    """A smooth synthetic photo as a JPEG, a little larger than the model's input (the server resizes)."""
    from PIL import Image

    side = int(size * 1.5)
    y, x = np.mgrid[0:side, 0:side] / side
    rgb = np.stack([np.sin(6 * x) * 0.5 + 0.5, np.cos(5 * y) * 0.5 + 0.5, x * y], axis=-1)
    buf = io.BytesIO()
    Image.fromarray((rgb * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_dir: Path, args: argparse.Namespace, max_batch: int, max_wait_ms: float
                 ) -> tuple[subprocess.Popen, str]:
    """``zoo serve`` in a subprocess (its output in a temp file); returns at once with the process and URL."""
    port = free_port()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, "-m", "zoo_core", "serve", str(model_dir), "--port", str(port), "--device", args.device,
           "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--log-level", "warning"]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a chatty server never blocks on a full one
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str) -> None:
    """Until ``/health`` answers 200 (the models are loaded); the server's output if it exits first."""
    import httpx

    log = proc.log  # type: ignore[attr-defined]
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"zoo serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError("zoo serve did not answer /health within 180 s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log.close()  # type: ignore[attr-defined]


async def load(url: str, image: bytes, args: argparse.Namespace, server_pid: int | None = None) -> dict[str, Any]:
    """``args.clients`` closed-loop clients for warmup + seconds; latencies of the requests that finish
    inside the measured window, and the server's CPU seconds per request over that window (a figure other
    processes on a shared machine barely move, unlike requests/s)."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    measure_from = start + args.warmup_seconds
    stop_at = measure_from + args.seconds
    cpu: dict[str, float | None] = {}

    async def sample_cpu() -> None:
        await asyncio.sleep(args.warmup_seconds)
        cpu["start"] = cpu_seconds(server_pid) if server_pid else None
        await asyncio.sleep(max(stop_at - time.perf_counter(), 0.0))
        cpu["end"] = cpu_seconds(server_pid) if server_pid else None

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                r = await http.post("/predict", files={"file": ("image.jpg", image, "image/jpeg")})
                done = time.perf_counter()
                if measure_from <= sent and done <= stop_at:
                    if r.status_code == 200:
                        latencies.append(done - sent)
                    else:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1

    await asyncio.gather(sample_cpu(), *(client() for _ in range(args.clients)))
    ms = np.asarray(latencies) * 1000.0
    p50, p90, p99 = (np.percentile(ms, [50, 90, 99]).tolist() if ms.size else [float("nan")] * 3)
    used = (cpu["end"] - cpu["start"]) if cpu.get("start") is not None and cpu.get("end") is not None else None
    return {"requests": int(ms.size), "requests_per_s": ms.size / args.seconds, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p99, "errors": errors, "server_cpu_s": used,
            "server_cpu_ms_per_request": used / ms.size * 1000.0 if used is not None and ms.size else None}


def run_setting(label: str, server: tuple[subprocess.Popen, str], image: bytes, args: argparse.Namespace,
                max_batch: int, max_wait_ms: float) -> dict[str, Any]:
    import httpx

    proc, url = server
    result = asyncio.run(load(url, image, args, proc.pid))
    models = httpx.get(url + "/metrics", timeout=10).json()["models"]
    result["server_batches"] = next(iter(models.values()))
    result.update(setting=label, max_batch=max_batch, max_wait_ms=max_wait_ms)
    mean = result["server_batches"]["mean_batch_size"]
    cpu = result["server_cpu_ms_per_request"]
    print(f"batching {label} (max-batch {max_batch}, max-wait {max_wait_ms:g} ms): "
          f"{result['requests_per_s']:.1f} req/s, p50 {result['p50_ms']:.1f} ms, p90 {result['p90_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms, mean batch {mean}, server CPU "
          f"{'n/a' if cpu is None else format(cpu, '.2f')} ms/request ({args.clients} clients, {args.seconds:g} s, "
          f"{result['requests']} requests, errors {result['errors'] or 0})", flush=True)
    return result


def header(args: argparse.Namespace, image: bytes) -> None:
    import torch

    from zoo_core.bench.flops import device_name

    print(f"# zoo serve load | {device_name(torch.device(args.device))}, {os.cpu_count()} CPUs | torch "
          f"{torch.__version__} | {args.model} at {args.image_size} px, 10 classes | {args.clients} closed-loop httpx "
          f"clients, one {len(image)}-byte JPEG per request (multipart) | {args.seconds:g} s measured after "
          f"{args.warmup_seconds:g} s warmup{' [tiny]' if args.tiny else ''}", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    image = test_image(args.image_size)
    header(args, image)
    results: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                               "model": args.model, "image_size": args.image_size, "clients": args.clients,
                               "seconds": args.seconds, "device": args.device}
    settings = {"on": (args.max_batch, args.max_wait_ms), "off": (1, 0.0)}
    settings = {k: v for k, v in settings.items() if args.only in (None, k)}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-serve-") as tmp:
        model_dir = save_model(args, Path(tmp))
        # both servers start together (loading takes seconds); the idle one waits on its queue, using no CPU
        servers = {k: start_server(model_dir, args, *v) for k, v in settings.items()}
        try:
            for proc, url in servers.values():
                wait_ready(proc, url)
            for k, (max_batch, max_wait_ms) in settings.items():
                results[k] = run_setting(k, servers[k], image, args, max_batch, max_wait_ms)
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    if "on" in results and "off" in results:
        on, off = results["on"], results["off"]
        speedup = on["requests_per_s"] / off["requests_per_s"] if off["requests_per_s"] else float("nan")
        tail = on["p99_ms"] / on["p50_ms"] if on["p50_ms"] else float("nan")
        met = speedup >= 2.0 and tail < 2.0
        results.update(speedup=speedup, p99_over_p50_on=tail, goal_met=met)
        cpu_ratio = (off["server_cpu_ms_per_request"] / on["server_cpu_ms_per_request"]
                     if on["server_cpu_ms_per_request"] and off["server_cpu_ms_per_request"] else None)
        results["server_cpu_ratio"] = cpu_ratio
        print(f"speedup {speedup:.2f}x requests/s with batching; p99/p50 {tail:.2f} (on), "
              f"{off['p99_ms'] / off['p50_ms']:.2f} (off); server CPU per request "
              f"{'n/a' if cpu_ratio is None else format(cpu_ratio, '.2f') + 'x'} less with batching", flush=True)
        print(f"goal (>= 2x requests/s, p99 < 2x p50 with batching): {'met' if met else 'NOT met'}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
