"""The Trainer's per-step overhead on a tiny model (issue 4: under 5% of the step on the CPU).

A tiny model makes the step short, so whatever the Trainer adds per step (callbacks, loss
accumulation, the scheduler, the progress bookkeeping) shows. Both sides run the same network, the
same fused SGD, the same reused batch, one after the other in this process; ``--rounds`` alternates
them and the median round is reported, because a shared CPU drifts between runs.

    python benchmarks/bench_step_overhead.py                       # timm test_resnet, batch 8, 32 px, CPU
    python benchmarks/bench_step_overhead.py --models test_resnet test_vit --steps 300
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as H  # noqa: E402
from bench_cls_train import NUM_CLASSES, plain_train, zoo_train  # noqa: E402

MODELS = ("test_resnet",)


def main(argv: list[str] | None = None) -> None:
    p = H.parser(__doc__.splitlines()[0], batch_size=8, image_size=32)
    p.set_defaults(device="cpu", steps=200, warmup=20, channels_last=False)
    p.add_argument("--models", nargs="+", help=f"timm model names (default {' '.join(MODELS)})")
    p.add_argument("--rounds", type=int, default=3, help="alternating plain/zoo rounds; the median is kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    args = H.parse(p, argv)
    args.opt, args.lr = "sgd", 1e-4
    torch.set_num_threads(args.threads)
    H.header("Trainer per-step overhead on a tiny model: plain loop vs zoo.Trainer", args)
    for name in args.models or MODELS:
        img_size = {"img_size": args.image_size} if "vit" in name else {}
        x = H.image_batch(args, args.image_size)
        y = torch.randint(0, NUM_CLASSES, (args.batch_size,), generator=torch.Generator().manual_seed(1))
        plains, zoos, ratios = [], [], []
        for _ in range(args.rounds):
            plain, weights = plain_train(name, args, x, y, img_size)
            zoo = zoo_train(name, args, x, y, img_size, weights)
            plains.append(plain)
            zoos.append(zoo)
            ratios.append(zoo[0] / plain[0])
        k = ratios.index(statistics.median_low(ratios))
        H.report(f"{name} train", plains[k], zoos[k], args)
        step_ms = 1000 * args.batch_size / plains[k][0]
        overhead = plains[k][0] / zoos[k][0] - 1.0
        print(f"{name}: plain step {step_ms:.2f} ms; Trainer overhead {100 * overhead:+.1f}% of the step "
              f"(target < 5%; rounds {', '.join(f'{100 * (1 / r - 1):+.1f}%' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
