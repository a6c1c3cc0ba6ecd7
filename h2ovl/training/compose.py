"""Config composition: an experiment YAML builds on fragments and overrides any key of them.

    extends:
      - ../base.yaml                                   # a whole config
      - model: ../../configs/model/tiny.yaml            # a fragment placed under a key
      - model.preprocessor: ../../configs/preprocessor/msac.yaml
    model:
      lr: 1.0e-4                                        # overrides the fragment's value
    trainer:
      max_steps: ${data.batching.batch_size}                     # omegaconf interpolation over the composed whole

Written here because jsonargparse can include a fragment file as a key's value but then ignores any other
setting of that key in the same file; OmegaConf does the merging and the interpolation. Paths in `extends`
are relative to the file that names them; later entries and the file's own keys win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from h2ovl.errors import SettingError, UserError, read_text_file
from h2ovl.preprocessing.base import preprocessor_class_path


class ConfigError(UserError, ValueError):
    pass


def _load(path: Path, chain: tuple[Path, ...]) -> DictConfig:
    if path in chain:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(map(str, chain))}")
    if not path.is_file():
        where = f" (named in {chain[-1]})" if chain else ""
        raise ConfigError(f"config file {path} does not exist{where}")
    try:
        raw = OmegaConf.create(read_text_file(path, ConfigError, "the config"))
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a YAML or OmegaConf parse failure is the file's
        raise ConfigError(f"{path}: not a valid YAML config: {str(error).strip().splitlines()[0]}") from None
    if not isinstance(raw, DictConfig):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(raw).__name__}")
    extends = raw.pop("extends", None)
    extends = [] if extends is None else list(extends) if OmegaConf.is_list(extends) else [extends]
    layers = []
    for entry in extends:
        if isinstance(entry, str):
            layers.append(_load((path.parent / entry).resolve(), (*chain, path)))
        elif isinstance(entry, DictConfig) and len(entry) == 1:
            ((key, target),) = entry.items()
            fragment = _load((path.parent / str(target)).resolve(), (*chain, path))
            placed = OmegaConf.create()
            OmegaConf.update(placed, str(key), fragment, force_add=True)
            layers.append(placed)
        else:
            raise ConfigError(f"{path}: each `extends` entry is a path or one `key: path` pair, got {entry!r}")
    return OmegaConf.merge(*layers, raw)


def compose(path: str | Path) -> dict[str, Any]:
    """The composed, interpolated config of `path` as plain data."""
    path = Path(path).resolve()
    try:
        config = OmegaConf.to_container(_load(path, ()), resolve=True)
    except ConfigError:
        raise
    except Exception as err:  # omegaconf's interpolation and YAML errors, with the file named
        raise ConfigError(f"{path}: {err}") from err
    model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict) and "preprocessor" in model:
        model["preprocessor"] = preprocessor_value(model["preprocessor"], f"{path}: model.preprocessor")
    return config


def preprocessor_value(value: Any, where: str) -> Any:
    """`model.preprocessor` with a short name (`fixed`, `dynamic`, `msac`: what the docs and `h2ovl preview`
    say) given as its class path (`preprocessor_class_path`); `where` names the key in the error."""
    name = value.get("class_path") if isinstance(value, dict) else value
    if not isinstance(name, str):
        return value
    try:
        name = preprocessor_class_path(name)
    except SettingError as error:
        raise ConfigError(f"{where} {error}") from None
    return {**value, "class_path": name} if isinstance(value, dict) else name


def compose_to_yaml(path: str | Path) -> str:
    return yaml.safe_dump(compose(path), sort_keys=False)


def expand_config_args(argv: list[str]) -> list[str]:
    """Replace each `--config FILE` (or `-c FILE`, `--config=FILE`) by its composed YAML text, which
    LightningCLI accepts in place of a path, and a short preprocessor name by its class path."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "-c"):
            target = next(args, None)
            if target is None:
                raise ConfigError(f"{arg} needs a file")
            out += ["--config", compose_to_yaml(target)]
        elif arg.startswith("--config="):
            out += ["--config", compose_to_yaml(arg.split("=", 1)[1])]
        elif arg in ("--model.preprocessor", "--model.preprocessor.class_path"):
            value = next(args, None)
            out += [arg] + ([] if value is None else [preprocessor_value(value, arg)])
        elif arg.startswith(("--model.preprocessor=", "--model.preprocessor.class_path=")):
            key, value = arg.split("=", 1)
            out.append(f"{key}={preprocessor_value(value, key)}")
        else:
            out.append(arg)
    return out
