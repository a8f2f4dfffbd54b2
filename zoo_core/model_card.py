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
    lines += compression_lines(config)
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


def compression_lines(config: dict[str, Any]) -> list[str]:
    """The card's "Compression" section: each pruning step and the int8 recipe, with the metric before and
    after each (what ``model.prune`` / ``model.quantize`` measured on their ``eval_data``)."""
    pruned, quantized = config.get("pruned") or {}, config.get("quantized") or {}
    if not pruned and not quantized:
        return []
    lines = ["", "## Compression", ""]
    for step in pruned.get("history") or []:
        params, macs = step.get("params") or [0, 0], step.get("macs_per_image") or [0, 0]
        nonzero = step.get("nonzero_params") or params
        lines.append(f"- pruned ({step.get('method')}, amount {step.get('amount')}): parameters {params[0]:,} -> "
                     f"{params[1]:,}, non-zero {nonzero[0]:,} -> {nonzero[1]:,}, MACs per image {macs[0]:,} -> "
                     f"{macs[1]:,}")
        lines += _metric_change_rows(step)
    if pruned.get("structure", {}).get("shapes"):
        lines.append(f"- the pruned architecture is recorded in config.json (`pruned.structure`: "
                     f"{len(pruned['structure']['shapes'])} tensors reshaped); `zoo.load` rebuilds it")
    if quantized:
        lines.append(f"- int8 ({quantized.get('method')} quantisation, {quantized.get('backend')} backend): "
                     "loads on CPU; `zoo.load` quantizes the architecture again and loads the saved int8 tensors")
        lines += _metric_change_rows(quantized)
    return lines


def _metric_change_rows(step: dict[str, Any]) -> list[str]:
    before, after = step.get("metrics_before") or {}, step.get("metrics_after") or {}
    keys = [k for k in before if k in after and k != "num_samples"]
    if not keys:
        return ["  - metrics not measured (pass eval_data= to measure the change)"]
    return [f"  - {k}: {_fmt_value(before[k])} -> {_fmt_value(after[k])} ({after[k] - before[k]:+.4f})"
            for k in keys if isinstance(before[k], (int, float)) and isinstance(after[k], (int, float))]


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _fmt_seq(seq: Any) -> str:
    return "(" + ", ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in (seq or [])) + ")"
