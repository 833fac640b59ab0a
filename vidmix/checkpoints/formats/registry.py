"""`Format`, the one type of a checkpoint layout, and `FORMATS`, the registry detection reads.

A file must match exactly one registered format: `detect_format` runs every detector, and two
matches are an error naming both (detectors are precise, never ordered).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from vidmix.checkpoints.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class Format:
    """A checkpoint layout. name: what `load_weights(format=...)` takes. detect: the file's tensor
    names -> whether they are this layout. to_canonical: the file's tensors -> the same tensors
    under canonical names (those of `vidmix.checkpoints.families`)."""

    name: str
    detect: Callable[[set[str]], bool]
    to_canonical: Callable[[dict], dict] = dict


# format name -> Format, in registration order (only for listing: detection is order-free)
FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add `fmt` (its name must be new); returns it."""
    if fmt.name in FORMATS:
        raise ValueError(f"checkpoint format {fmt.name!r} is already registered")
    FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> Format:
    """Remove format `name` (e.g. a test's toy format); returns it."""
    return FORMATS.pop(name)


def detect_format(keys) -> str:
    """The name of the one format whose detector accepts tensor names `keys`; CheckpointError if
    none does or several do."""
    keys = set(keys)
    matches = [name for name, fmt in FORMATS.items() if fmt.detect(keys)]
    if len(matches) == 1:
        return matches[0]
    sample = ", ".join(sorted(keys)[:8])
    if matches:
        raise CheckpointError(f"ambiguous checkpoint layout: recognised by formats "
                              f"{', '.join(map(repr, matches))} (first keys: {sample})")
    raise CheckpointError(f"unrecognised checkpoint layout (first keys: {sample}); known "
                          f"formats: {', '.join(FORMATS)}")
