"""Name resolution shared by distances, miners and algorithms (private)."""

from __future__ import annotations

import keras

from tfcontrast._checks import did_you_mean


def resolve(identifier, *, base: type, registry: dict, argument: str, aliases=None):
    """Returns an instance of `base` for a name, a config dict or an instance.

    Names are case-insensitive and may be aliases. An unknown name raises a ValueError
    that names `argument` and lists the valid names.
    """
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        key = (aliases or {}).get(key, key)
        if key in registry:
            return registry[key]()
    raise ValueError(
        f"Unknown `{argument}`: {identifier!r}. Expected one of {sorted(registry)} or a "
        f"{base.__module__}.{base.__name__} instance."
        + (
            did_you_mean(identifier, [*registry, *(aliases or {})])
            if isinstance(identifier, str)
            else ""
        )
    )
