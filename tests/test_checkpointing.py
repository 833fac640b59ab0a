"""Checkpoint verification in-process: checksums, fallback to the newest intact step, restoring
the parameters alone, and errors that are not damage passing through."""

import json
import logging
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from vidmix.errors import UserError
from vidmix.training.checkpointing import (
    RECORD,
    Checkpoints,
    DamagedCheckpointError,
    abstract_like,
    checksums,
)

# a read that fails inside orbax must not leave coroutines behind for Python to report later
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def test_checksums_ignore_sharding_and_catch_any_changed_word(rng):
    x = rng.standard_normal((16, 24)).astype(np.float32)
    mesh = jax.make_mesh((2, 4), ("a", "b"))
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("a", "b")))
    assert checksums({"x": sharded}) == checksums({"x": x}) == checksums({"x": jnp.asarray(x)})
    for dtype in (np.float32, jnp.bfloat16, np.int8, np.uint32, np.bool_):
        a = (rng.standard_normal((5, 7)) > 0) if dtype == np.bool_ else \
            (100 * rng.standard_normal((5, 7))).astype(dtype)
        words = a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])
        base = checksums({"a": a})["a"]
        for i in ((0, 0), (2, 3), (4, 6)):
            flipped = words.copy()
            flipped[i] ^= 1  # one bit
            assert checksums({"a": flipped.view(a.dtype)})["a"] != base, (dtype, i)
        swapped = a.copy()
        j = next(j for j in range(1, 7) if words[0, j] != words[0, 0])
        swapped[0, 0], swapped[0, j] = a[0, j], a[0, 0]
        assert checksums({"a": swapped})["a"] != base, dtype


def _state(step):
    return {"params": {"w": jnp.full((4, 8), float(step)), "b": jnp.arange(3.0) + step},
            "opt_state": {"m": jnp.full((4, 8), -float(step))},
            "step": jnp.asarray(step, jnp.int32)}


def _iterator():
    return iter(grain.MapDataset.range(100).shuffle(seed=0).to_iter_dataset())


@pytest.fixture
def saved(tmp_path):
    """Steps 1, 2, 3 of a toy state; the iterator has moved `step` items at step `step`."""
    ckpt = Checkpoints(str(tmp_path / "checkpoints"))
    it = _iterator()
    for step in (1, 2, 3):
        next(it)
        ckpt.maybe_save(step, _state(step), it)
    ckpt.close()
    return str(tmp_path / "checkpoints")


def _shardings(state):
    return jax.tree.map(lambda x: x.sharding, state)


def _edit_record(directory, step, name):
    path = os.path.join(directory, str(step), RECORD, "metadata")
    with open(path) as f:
        record = json.load(f)
    assert name in record["arrays"]
    record["arrays"][name] = "0" * 8
    with open(path, "w") as f:
        json.dump(record, f)


def test_a_damaged_step_falls_back_and_params_alone_ignore_the_optimiser(saved, caplog):
    _edit_record(saved, 3, "opt_state.m")  # as if opt_state.m had been garbled on disk
    reader = Checkpoints(saved, read_only=True)
    params = _state(0)["params"]
    step, restored = reader.restore_params(abstract_like(params, _shardings(params)))
    reader.close()
    assert step == 3 and float(restored["w"][0, 0]) == 3.0  # the parameters are intact
    assert not caplog.records

    ckpt = Checkpoints(saved)
    it = _iterator()
    with caplog.at_level(logging.WARNING, "vidmix"):
        state = ckpt.restore(_state(0), _shardings(_state(0)), it)
    ckpt.close()
    assert int(state["step"]) == 2 and it.get_state() == {"next_index": 2}
    damaged = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(damaged) == 1 and "step 3" in damaged[0] and "opt_state.m" in damaged[0]
    assert sorted(os.listdir(saved)) == ["1", "2"]  # moved aside, not deleted
    assert os.listdir(saved + "_damaged") == ["3"]


def test_no_intact_step_names_them_and_deletes_nothing(saved):
    for step in (1, 2, 3):
        _edit_record(saved, step, "params.w" if step % 2 else "step")
    ckpt = Checkpoints(saved)
    with pytest.raises(DamagedCheckpointError, match=r"no intact checkpoint .* step\(s\) 3, 2, 1"):
        ckpt.restore(_state(0), _shardings(_state(0)), _iterator())
    reader = Checkpoints(saved, read_only=True)
    with pytest.raises(DamagedCheckpointError, match="step 3 .* is damaged"):
        reader.restore_params(step=3)  # asked for: no other step instead
    assert reader.restore_params(step=2)[0] == 2  # its damage is outside the parameters
    assert sorted(os.listdir(saved)) == ["1", "2", "3"]


def test_other_errors_are_not_taken_for_damage(saved, caplog):
    wrong = _state(0)
    wrong["params"]["w"] = jnp.zeros((5, 8))  # a model of another shape: not damage
    with pytest.raises(ValueError) as raised:
        Checkpoints(saved).restore(wrong, _shardings(wrong), _iterator())
    assert not isinstance(raised.value, DamagedCheckpointError)
    assert not caplog.records and sorted(os.listdir(saved)) == ["1", "2", "3"]


def test_a_step_saved_without_checksums_restores_with_a_warning(saved, caplog):
    import shutil

    shutil.rmtree(os.path.join(saved, "3", RECORD))
    with caplog.at_level(logging.WARNING, "vidmix"):
        step, params = Checkpoints(saved, read_only=True).restore_params()
    assert step == 3 and float(params["b"][0]) == 3.0
    assert "has no checksums" in caplog.text


def test_an_altered_iterator_state_is_caught(saved, caplog):
    path = os.path.join(saved, "3", "data", "process_0-of-1.json")
    with open(path) as f:
        state = json.load(f)
    state["next_index"] = 7  # parses, but is not where step 3 left the data
    with open(path, "w") as f:
        json.dump(state, f)
    it = _iterator()
    with caplog.at_level(logging.WARNING, "vidmix"):
        restored = Checkpoints(saved).restore(_state(0), _shardings(_state(0)), it)
    assert int(restored["step"]) == 2 and it.get_state() == {"next_index": 2}
    assert "step 3" in caplog.text and "data-iterator state of process 0 differs" in caplog.text


def test_a_failed_restore_finishes_its_other_reads_before_orbax_closes_their_loop(saved, caplog):
    """orbax gathers one read per array on a loop it closes as soon as the gather fails; reads
    left in flight then complete onto the closed loop (tracebacks printed long after vidmix's
    one-line report). Checkpoints makes the loop wait for them."""
    import asyncio

    from orbax.checkpoint._src import asyncio_utils

    Checkpoints(saved)  # installs the wait
    finished = []

    async def read(i):
        if i == 0:
            raise OSError("a damaged array")
        await asyncio.sleep(0.05)
        finished.append(i)

    async def restore():
        await asyncio.gather(*(read(i) for i in range(4)))

    with caplog.at_level(logging.WARNING, "asyncio"), pytest.raises(OSError, match="damaged"):
        asyncio_utils.run_sync(restore())
    assert sorted(finished) == [1, 2, 3] and not caplog.records
    with pytest.raises(OSError):  # orbax's own run, for contrast: the reads never finish
        asyncio_utils._run_sync_via_new_loop.__wrapped__(restore())
    assert sorted(finished) == [1, 2, 3]


def test_an_iterator_state_from_another_pipeline_is_a_clear_error(saved):
    """A state this loader cannot take (e.g. written by vidmix's former DataLoader pipeline) says
    so, and the checkpoint, which is not damaged, stays where it is."""
    state_file = os.path.join(saved, "3", "data", "process_0-of-1.json")
    with open(state_file, "w") as f:  # what grain's DataLoader wrote
        json.dump({"version": 2, "last_seen_indices": {"0": 5}, "last_worker_index": 0,
                   "worker_count": 0, "sampler": "IndexSampler", "data_source": "x"}, f)
    ckpt = Checkpoints(saved)
    with pytest.raises(UserError, match="data-iterator state .* is not one this loader can take"):
        ckpt.restore(_state(0), _shardings(_state(0)), _iterator())
    ckpt.close()
    assert sorted(os.listdir(saved)) == ["1", "2", "3"]
