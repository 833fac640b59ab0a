"""Small helpers for renaming tensors by ordered (pattern, replacement) rules."""

from __future__ import annotations

import re


def rename(tensors: dict, rules: list[tuple[str, str]]) -> dict:
    """Apply the first matching regex rule to each key; keys no rule matches stay as they are."""
    out = {}
    for key, value in tensors.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                key = new
                break
        out[key] = value
    return out


def strip_prefix(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in tensors.items()}
