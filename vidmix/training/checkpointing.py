"""orbax checkpoints of a run: the train state plus every process's data-iterator state, and a
record of checksums to verify them by.

Saves are asynchronous (training goes on while arrays are written) every `every` steps, the last
`keep` are kept, and an interrupted save never counts: orbax finalises a step directory only once
it is complete, so a run killed at any moment resumes from its last whole checkpoint, on exactly
the batch that would have come next.

Each step also holds `checksums`, saved with the arrays (a step is finalised with its record or
not at all): one checksum per array and one per process's iterator state. Restoring verifies what
it read against them; a step that fails to read or to verify is reported (step, array or file,
what is wrong) and the newest intact older step is used instead. Nothing is deleted: training
moves damaged steps to `checkpoints_damaged/` (its next saves reuse their step numbers), eval,
predict and export leave them where they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint._src import asyncio_utils

from vidmix.errors import UserError

log = logging.getLogger(__name__)

RECORD = "checksums"  # the item of a step that holds its checksums


class DamagedCheckpointError(UserError):
    """No checkpoint of a run could be read and verified (or not the one asked for)."""


def _finish_abandoned_reads() -> None:
    """Makes orbax wait for all of a restore's reads before it closes their event loop.

    orbax runs each restore on a fresh event loop and gathers one read per array; when one read
    fails, the gather raises at once and the loop is closed with the other reads still in flight.
    TensorStore then completes them from its own threads onto the closed loop ("RuntimeError:
    Event loop is closed" tracebacks), and failed reads nobody awaited are logged as "Task
    exception was never retrieved", all long after vidmix reported the damage in one line.
    Wrapping orbax's coroutine so that, once it is done, it awaits every other task of its loop
    (keeping their errors) removes that noise at its source; a read that succeeds is unchanged.
    Installed once; without orbax's hook (another orbax version), nothing changes."""
    run = getattr(asyncio_utils, "_run_sync_via_new_loop", None)
    if run is None or getattr(run, "_vidmix_drains", False):
        return

    async def drained(coro):
        try:
            return await coro
        finally:
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.gather(*others, return_exceptions=True)

    def run_drained(coro):
        return run(drained(coro))

    run_drained._vidmix_drains = True
    run_drained.__wrapped__ = run  # orbax's own
    asyncio_utils._run_sync_via_new_loop = run_drained


class _Damaged(Exception):
    """One step failed to read or to verify; the message says what is wrong."""


def abstract_like(tree, shardings):
    """ShapeDtypeStructs (with shardings) to restore `tree` into."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


# ---- checksums ---------------------------------------------------------------------------------


def key_names(path) -> list[str]:
    """A tree path as names: dict keys, sequence indices and attribute names."""
    return [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]


def array_names(tree) -> list[str]:
    """The leaves' names as orbax writes them: 'opt_state.1.0.mu.head.kernel.value'."""
    return [".".join(key_names(p)) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _fmix32(h):
    """murmur3's finaliser: a bijection of uint32 that spreads every input bit."""
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(x):
    """An array's bytes as uint32 words: narrower items widened, 8-byte ones split in two."""
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _array_checksum(x):
    """The sum, mod 2**32, of fmix(w_i + i * 0x9E3779B9) over the array's words w_i at flat
    positions i (C order). fmix is a bijection, so a changed word always changes the sum (more
    changes leave it equal with odds of 2**-32); integer sums do not depend on the order of
    addition, so any sharding, on any number of devices or hosts, gives the same checksum."""
    w = _words(x)
    i = jnp.zeros(w.shape, jnp.uint32)
    for axis, stride in enumerate(np.cumprod((1,) + w.shape[::-1])[-2::-1]):
        i = i + jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride % 2**32)
    return _fmix32(w + i * jnp.uint32(0x9E3779B9)).sum(dtype=jnp.uint32)


_checksum_leaves = jax.jit(lambda leaves: jnp.stack([_array_checksum(x) for x in leaves]))


def checksums(tree) -> dict[str, str]:
    """{array name: 8 hex digits} of every array of `tree`, computed where the arrays are."""
    out = _checksum_leaves(jax.tree.leaves(tree))
    sums = np.asarray(out.addressable_shards[0].data if isinstance(out, jax.Array) else out)
    return {name: f"{c:08x}" for name, c in zip(array_names(tree), sums, strict=True)}


def _iterator_digest(iterator) -> str:
    """A digest of a data iterator's state (what grain writes for it)."""
    return hashlib.blake2b(_JsonState(iterator).get_state(), digest_size=8).hexdigest()


class _JsonState:
    """Hands any iterator whose state is a JSON-able dict (a grain dataset iterator, or the train
    loop's `Prefetch` around one) to grain's orbax handler, which writes the state of anything
    that is not itself a grain dataset iterator as text: here, the state's JSON."""

    def __init__(self, iterator):
        self.iterator = iterator

    def get_state(self) -> bytes:
        return json.dumps(self.iterator.get_state(), sort_keys=True).encode()

    def set_state(self, state: bytes) -> None:
        value = json.loads(state)
        try:
            self.iterator.set_state(value)
        except (KeyError, TypeError) as e:
            raise UserError(
                f"the checkpoint's data-iterator state ({str(state[:120], 'utf-8', 'replace')}) "
                f"is not one this loader can take (missing {e}): it was written by another "
                "input pipeline (vidmix before its grain Dataset loaders, or a different data "
                "config). Resume with the config it was written with, or start a new workdir"
            ) from e

    def start_prefetch(self) -> None:  # the handler calls this after a restore; batches are
        pass                           # fetched on the next `next()`


def _gather_digests(digest: str) -> list[str]:
    """Every process's digest, in process order."""
    if jax.process_count() == 1:
        return [digest]
    every = multihost_utils.process_allgather(np.frombuffer(bytes.fromhex(digest), np.uint8))
    return [bytes(d).hex() for d in np.asarray(every)]


def _everywhere(ok: bool) -> bool:
    """True only if `ok` on every process, so that all of them restore the same step."""
    if jax.process_count() == 1:
        return ok
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(ok))).min())


def _verify(record: dict, restored: dict, iterator) -> None:
    """Raises _Damaged naming the arrays (and iterator state) that differ from `record`."""
    saved = record["arrays"]
    bad = [n for n, c in checksums(restored).items() if saved.get(n) != c]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise _Damaged(f"{len(bad)} array(s) differ from their saved checksums: "
                       f"{', '.join(bad[:3])}{more}")
    if iterator is not None and record["iterators"][jax.process_index()] != \
            _iterator_digest(iterator):
        raise _Damaged(f"the data-iterator state of process {jax.process_index()} differs from "
                       "its saved checksum")


# ---- read errors -------------------------------------------------------------------------------

# tensorstore's status codes for data it cannot read, as they appear in orbax's errors
_READ_CODES = ("OUT_OF_RANGE", "DATA_LOSS", "FAILED_PRECONDITION", "NOT_FOUND")


def _bad_json(step_dir: str) -> list[str]:
    """The step's JSON files (orbax's metadata, iterator states, checksums) that do not parse."""
    bad = []
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            if os.path.basename(root) == "d" or name in ("manifest.ocdbt", "commit_success.txt"):
                continue  # array data, not JSON
            with open(path, "rb") as f:
                text = f.read()
            try:
                json.loads(text)
            except ValueError:
                bad.append(os.path.relpath(path, step_dir) + (" (empty)" if not text else ""))
    return sorted(bad)


def _read_error(e: BaseException | None, step_dir: str) -> str | None:
    """What a failed read of the step in `step_dir` says, if `e` is one or was raised from one (a
    missing, truncated or garbled file); None for any other error, which is a bug or a mismatch
    to report as is."""
    while e is not None:
        if isinstance(e, json.JSONDecodeError):
            return f"not valid JSON: {', '.join(_bad_json(step_dir)) or 'a metadata file'}"
        text = str(e).strip()
        if isinstance(e, OSError) or isinstance(e, ValueError) and (
                text.endswith("does not exist.") or any(c in text for c in _READ_CODES)):
            return text.splitlines()[0][:300]  # grain's missing file, or tensorstore's error
        e = e.__cause__
    return None


# ---- the manager ------------------------------------------------------------------------------


class Checkpoints:
    """A run's checkpoint directory. read_only: for eval, predict and export (nothing written)."""

    def __init__(self, directory: str, every: int = 1, keep: int | None = None, *,
                 read_only: bool = False):
        self.directory = directory
        self.every = every
        self.read_only = read_only
        options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=keep,
                                               enable_async_checkpointing=True,
                                               create=not read_only)
        # a reader restores the parameters alone, which takes the PyTree handler
        handlers = dict(state=ocp.PyTreeCheckpointHandler(),
                        data=grain.checkpoint.CheckpointHandler(),
                        **{RECORD: ocp.JsonCheckpointHandler()}) if read_only else None
        self.manager = ocp.CheckpointManager(directory, options=options, item_handlers=handlers)
        _finish_abandoned_reads()

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def latest_step(self):
        return self.manager.latest_step()

    def maybe_save(self, step: int, state, iterator, force: bool = False) -> bool:
        if not (force or self.due(step)):
            return False
        record = {"arrays": checksums(state), "iterators": _gather_digests(
            _iterator_digest(iterator))}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=grain.checkpoint.CheckpointSave(_JsonState(iterator)),
                                  **{RECORD: ocp.args.JsonSave(record)})
        return self.manager.save(step, args=args, force=force)

    def restore(self, state, shardings, iterator):
        """The newest intact checkpoint's state (and the iterator moved to its position), or
        None when there is none yet. Damaged newer steps are moved to checkpoints_damaged/."""
        args = ocp.args.StandardRestore(abstract_like(state, shardings))
        found = self._newest_intact(lambda step: self._restore_step(step, args, iterator))
        return None if found is None else found[1]

    def restore_params(self, params=None, step: int | None = None):
        """(step, params) of the newest intact checkpoint, or of `step` (then no other), without
        the optimiser and iterator states; None when there is no checkpoint. params: the
        abstract tree (ShapeDtypeStructs with shardings) to restore into; None: numpy arrays on
        the host, as saved."""

        def restore(step):
            target = {"params": params if params is not None else self._saved_params(step)}
            numpy = ocp.RestoreArgs(restore_type=np.ndarray)
            restore_args = (ocp.checkpoint_utils.construct_restore_args(target)
                            if params is not None else jax.tree.map(lambda _: numpy, target))
            args = ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                          partial_restore=True)
            return self._restore_step(step, args)["params"]

        if step is not None and step not in self.manager.all_steps():
            raise ValueError(f"no checkpoint of step {step} in {self.directory}; its steps: "
                             f"{', '.join(map(str, sorted(self.manager.all_steps())))}")
        return self._newest_intact(restore, None if step is None else [step])

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    @contextlib.contextmanager
    def _reading(self, step: int, what: str = ""):
        """Turns a read error inside into _Damaged (`what` + what the error says); any other
        error passes unchanged."""
        try:
            yield
        except Exception as e:
            if (why := _read_error(e, self._step_dir(step))) is None:
                raise
            raise _Damaged(what + why) from e

    def _saved_params(self, step: int):
        """Numpy placeholders of the parameters of `step`, from its metadata."""
        with self._reading(step):
            saved = self.manager.item_metadata(step)["state"]
        tree = getattr(saved, "tree", saved)
        if not isinstance(tree, dict) or "params" not in tree:
            raise ValueError(f"checkpoint {step} in {self.directory} holds no 'params'")
        return jax.tree.map(lambda m: np.zeros((), m.dtype), tree["params"])

    def _restore_step(self, step: int, state_args, iterator=None):
        """The state of `step` (restored by `state_args`; with `iterator`, its data position
        too), verified against the step's record; raises _Damaged saying what is wrong."""
        record = self._record(step)
        items = {"state": state_args}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(_JsonState(iterator))
        with self._reading(step):
            restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if record is None:
            log.warning("checkpoint step %d in %s has no checksums (saved before vidmix verified "
                        "checkpoints): restored without verifying it", step, self.directory)
        else:
            _verify(record, restored["state"], iterator)
        return restored["state"]

    def _record(self, step: int) -> dict | None:
        """The checksums saved with `step`; None for steps saved without them."""
        if not os.path.isdir(os.path.join(self._step_dir(step), RECORD)):
            return None
        with self._reading(step, "its checksum record is unreadable: "):
            record = self.manager.restore(step, args=ocp.args.Composite(
                **{RECORD: ocp.args.JsonRestore()}))[RECORD]
        if not isinstance(record, dict) or not {"arrays", "iterators"} <= set(record):
            raise _Damaged("its checksum record is incomplete")
        return record

    def _newest_intact(self, restore: Callable[[int], object], steps: list[int] | None = None):
        """(step, what `restore` returned) for the newest of `steps` (default: all, newest first)
        that restores and verifies; None when there are no steps. Each damaged step is logged
        once; training moves them aside."""
        asked = steps is not None
        if not asked:
            steps = sorted(self.manager.all_steps(), reverse=True)
        damaged = []
        for step in steps:
            try:
                result, why = restore(step), None
            except _Damaged as e:
                result, why = None, str(e)
            if _everywhere(why is None):
                if damaged:
                    log.warning("falling back to step %d, the newest intact checkpoint", step)
                    self._set_aside(damaged)
                return step, result
            log.warning("checkpoint step %d in %s is damaged: %s", step, self.directory,
                        why or "another process could not restore it")
            damaged.append(step)
        if not damaged:
            return None
        if asked:
            raise DamagedCheckpointError(f"checkpoint step {damaged[0]} in {self.directory} is "
                                         "damaged (the reason is logged above); choose another")
        raise DamagedCheckpointError(
            f"no intact checkpoint in {self.directory}: step(s) {', '.join(map(str, damaged))} "
            "failed to read or verify (the reasons are logged above). Nothing was deleted. To "
            f"start afresh, use a new --workdir, or move the step directories out of "
            f"{self.directory}")

    def _set_aside(self, steps: list[int]) -> None:
        """Training only: moves damaged steps to checkpoints_damaged/ (kept for inspection),
        so that the steps after the restored one can be saved again."""
        if self.read_only:
            return
        aside = self.directory.rstrip("/") + "_damaged"
        if jax.process_index() == 0:
            for step in steps:
                dest = os.path.join(aside, str(step))
                n = 1
                while os.path.exists(dest):
                    n += 1
                    dest = os.path.join(aside, f"{step}.{n}")
                os.makedirs(aside, exist_ok=True)
                shutil.move(self._step_dir(step), dest)
                log.warning("moved damaged step %d to %s (delete it when you no longer need it)",
                            step, dest)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("damaged checkpoints moved")
        self.manager.reload()

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
