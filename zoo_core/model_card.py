"""The ``README.md`` that ``model.save()`` writes beside the weights: what the model is, how it scored,
how it was trained and where its weights came from."""

from __future__ import annotations

import json
import math
from typing import Any


def model_card(config: dict[str, Any]) -> str:
    """A README.md describing the saved model: task, classes, metrics, training, provenance.

    Metrics are ``model.last_metrics`` (set by ``zoo.evaluate`` and the Trainer's last validation);
    the training section is ``model.config["training"]`` (the Trainer's resolved settings).
    """
    from .saving import model_label

    name = model_label(config)
    names = [str(c) for c in config.get("class_names", [])]
    pre = config.get("preprocess", {})
    prov = config.get("provenance", {})
    vers = config.get("versions", {})
    lines = [f"# {name} ({config['task']})", "",
             f"A {config['task']} model with {len(names)} classes, saved by zoo {config.get('zoo_version')}.",
             "", "```python", "import zoo_core as zoo", 'model = zoo.load("path/to/this/directory")',
             'predictions = model.predict("image.jpg")', "```", "", "## Model", "",
             f"- architecture: `{name}`" + (f" with options `{json.dumps(config['options'])}`"
                                           if config.get("options") else ""),
             f"- task: {config['task']}",
             f"- classes ({len(names)}): {', '.join(names[:50])}" + (" ..." if len(names) > 50 else ""),
             f"- input: {pre.get('in_chans', 3)} x {' x '.join(map(str, pre.get('input_size', [])))}, "
             f"mean {_fmt_seq(pre.get('mean'))}, std {_fmt_seq(pre.get('std'))}, "
             f"{pre.get('interpolation')} resize, crop_pct {pre.get('crop_pct')}",
             "- export formats (each export is run and compared with eager when written): "
             f"{', '.join(config.get('export_formats') or []) or 'not declared'}"]
    metrics = config.get("metrics") or {}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    lines += ["", "## Metrics (last evaluation)", ""]
    if scalars:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt_value(v)} |" for k, v in sorted(scalars.items())]
        nested = sorted(k for k, v in metrics.items() if isinstance(v, dict))
        if nested:
            lines += ["", f"Per-class and structured results ({', '.join(nested)}) are in config.json."]
    else:
        lines.append("Not evaluated yet (run `zoo.evaluate(model, data)` before saving).")
    lines += ["", "## Training", ""]
    if config.get("training"):
        lines += ["```json", json.dumps(config["training"], indent=2, sort_keys=True, default=str), "```"]
    else:
        lines.append("No training run recorded (weights as loaded or initialised).")
    lines += ["", "## Provenance", "",
              f"- weights: {prov.get('weights') or 'random initialisation'}"]
    if prov.get("derived_from"):
        lines.append(f"- fine-tuned from: {prov['derived_from']}"
                     + (f" (sha256 {prov['derived_from_sha256']})" if prov.get("derived_from_sha256") else ""))
    for key in ("url", "license"):
        if prov.get(key):
            lines.append(f"- {key}: {prov[key]}")
    if prov.get("sha256"):
        lines.append(f"- source file sha256: {prov['sha256']}")
    lines += [f"- saved: {prov.get('saved', '-')}",
              f"- model.safetensors sha256: {config['sha256']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items()))]
    return "\n".join(lines) + "\n"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _fmt_seq(seq: Any) -> str:
    return "(" + ", ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in (seq or [])) + ")"
