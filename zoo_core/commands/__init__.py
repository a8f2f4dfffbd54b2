"""Sub-commands of the ``zoo`` CLI, one module per group; each defines ``add_parsers(sub)``.

Modules here import torch only inside the functions that run a command, so ``zoo list`` stays fast.
"""

MODULES = ("catalog", "data", "train", "demo", "weights", "bench", "serve", "prune")
