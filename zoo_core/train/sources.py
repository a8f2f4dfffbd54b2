"""Where Trainer settings come from besides Python: ``zoo train`` flags and ``--config`` YAML files.

One flag per :class:`~zoo_core.train.config.TrainConfig` field (:func:`add_arguments`), the YAML file
(:func:`load_yaml`), and their merge (:func:`from_sources`: defaults < YAML < flags), every value
checked by the field's own rule (the same as in Python), naming the flag or the file it came from.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Mapping

from ..errors import ZooError
from .config import _RULES, TrainConfig, _check_names


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a run file: a mapping of :class:`TrainConfig` fields (plus the command's own keys)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ZooError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ZooError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ZooError(f"{path} must hold a mapping of settings (key: value), found {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _flag_of(name: str) -> str:
    """The flag(s) of a field, as an error names them: ``--max-epochs/--epochs``."""
    return "/".join(["--" + name.replace("_", "-"), *_RULES[name].meta.get("aliases", ())])


_FLAG = object()  # "the flag was given without a value"


class _OptionalBool(argparse.Action):
    """``--x`` sets True, ``--no-x`` False, ``--x VALUE`` the value's text (true/false/auto, read by the rule)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string and option_string.startswith("--no-"):
            if values is not _FLAG:
                parser.error(f"{option_string} takes no value")
            value = False
        else:
            value = True if values is _FLAG else values
        setattr(namespace, self.dest, value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`TrainConfig` field; unset flags are absent from the namespace.

    A flag keeps its text: :func:`from_sources` checks it with the field's rule, so ``--lr -1`` fails
    like ``lr=-1`` (a one-line ``zoo train: error:``, exit 1), with no second parser to disagree."""
    group = parser.add_argument_group("trainer settings (also settable in --config YAML)")
    for f in dataclasses.fields(TrainConfig):
        rule = _RULES[f.name]
        flag = "--" + f.name.replace("_", "-")
        choices = f"one of {', '.join(rule.choices)}; " if rule.choices else ""
        help_text = f"{f.metadata['help']} ({choices}default: {f.default})"
        names = [flag, *f.metadata.get("aliases", ())]
        if rule.base is bool and not rule.optional:
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif rule.base is bool:  # --x, --no-x, or --x VALUE (true/false/auto)
            group.add_argument(*names, f"--no-{flag[2:]}", dest=f.name, action=_OptionalBool, nargs="?", const=_FLAG,
                               default=argparse.SUPPRESS, metavar="BOOL", help=help_text)
        else:
            group.add_argument(*names, dest=f.name, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def from_sources(yaml_values: Mapping[str, Any], args: argparse.Namespace, *,
                 other_keys: tuple[str, ...] = (), source: str = "the config file") -> TrainConfig:
    """Defaults < YAML file < explicit flags. YAML keys that are neither fields nor ``other_keys``
    (the command's own, such as ``model``) raise naming the closest field; a bad value names
    ``source`` (the file's path), a bad flag its flag."""
    _check_names(yaml_values, where=f"setting in {source}", others=other_keys, hint="")
    values = {k: _RULES[k](v, source) for k, v in yaml_values.items() if k in _RULES}
    values.update({k: _RULES[k](v, _flag_of(k)) for k, v in vars(args).items() if k in _RULES})
    return TrainConfig(**values)
