"""Errors raised when a checkpoint does not fit a model."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or whose format is not recognised."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose tensors do not map one-to-one onto the model's parameters.

    Lists every problem at once: `missing` (model parameters no source tensor fills),
    `unexpected` (source tensors nothing uses) and `mismatched` (same role, different shape).
    """

    def __init__(self, missing=(), unexpected=(), mismatched=(), *, source: str = ""):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        lines = [f"checkpoint {source} does not fit the model:" if source else
                 "checkpoint does not fit the model:"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        if self.mismatched:
            lines.append(f"  shape mismatch ({len(self.mismatched)}): "
                         + ", ".join(f"{name} {src} vs model {dst}"
                                     for name, src, dst in self.mismatched))
        lines.append("  (pass ignore=(...) patterns to leave chosen parameters or tensors out "
                     "deliberately)")
        super().__init__("\n".join(lines))
