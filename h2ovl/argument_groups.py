"""Reading an argument group (a small frozen dataclass of settings, such as `model.optim` or `data.batching`)
however it arrives: built by LightningCLI, passed in Python, or as the mapping a checkpoint saved by
LightningCLI holds. Dependency-free, so the data side and the training side share it."""

from __future__ import annotations

from typing import Any, TypeVar

from h2ovl.errors import SettingError

Group = TypeVar("Group")


def as_group(cls: type[Group], value: Group | dict[str, Any] | None) -> Group:
    """`value` as an instance of `cls`: itself, built from its fields as a mapping, or the defaults for None."""
    if value is None:
        return cls()
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError as error:
            raise SettingError(f"{cls.__name__}: {error}") from None
    return value
