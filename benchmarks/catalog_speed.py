"""How fast is reading the catalog? `zoo list --task cls` vs `import timm; timm.list_models()`.

Each command runs in a fresh process (what a user's shell does), ``--repeat`` times; the median wall
time is printed with the ratio, and whether ``zoo list`` imported torch. The first zoo run also
warms the per-version timm catalog cache in $ZOO_HOME (reported separately as "cold").

    python benchmarks/catalog_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ZOO_LIST = [sys.executable, "-c",
            "import sys; from zoo_core.cli import main; import io, contextlib;"
            "buf = io.StringIO();\n"
            "with contextlib.redirect_stdout(buf): rc = main(['list', '--task', 'cls'])\n"
            "print(len(buf.getvalue().split()), 'torch' in sys.modules)"]
TIMM_LIST = [sys.executable, "-c", "import timm; print(len(timm.list_models()))"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout.strip()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ, ZOO_HOME=tempfile.mkdtemp(prefix="zoo-bench-"))
    cold, _ = timed(ZOO_LIST, env)
    zoo_times, timm_times = [], []
    for _ in range(args.repeat):
        t, zoo_out = timed(ZOO_LIST, env)
        zoo_times.append(t)
        t, timm_out = timed(TIMM_LIST, env)
        timm_times.append(t)
    n_models, torch_imported = zoo_out.split()
    z, t = statistics.median(zoo_times), statistics.median(timm_times)
    print(f"zoo list --task cls : {z:.3f} s median of {args.repeat} ({n_models} names; cold cache {cold:.3f} s; "
          f"torch imported: {torch_imported})")
    print(f"timm.list_models()  : {t:.3f} s median of {args.repeat} ({timm_out} names)")
    print(f"ratio zoo/timm      : {z / t:.3f}  (target: zoo under 0.5 s)")


if __name__ == "__main__":
    main()
