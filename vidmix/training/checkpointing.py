"""orbax checkpoints of a run: the train state plus every process's data-iterator state.

Saves are asynchronous (training goes on while arrays are written) every `every` steps, the last
`keep` are kept, and an interrupted save never counts: orbax finalises a step directory only once
it is complete, so a run killed at any moment resumes from its last whole checkpoint, on exactly
the batch that would have come next.
"""

from __future__ import annotations

import grain
import jax
import orbax.checkpoint as ocp


def abstract_like(tree, shardings):
    """ShapeDtypeStructs (with shardings) to restore `tree` into."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)


class Checkpoints:
    def __init__(self, directory: str, every: int, keep: int):
        self.directory = directory
        self.every = every
        options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=keep,
                                               enable_async_checkpointing=True, create=True)
        self.manager = ocp.CheckpointManager(directory, options=options)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def latest_step(self):
        return self.manager.latest_step()

    def maybe_save(self, step: int, state, iterator, force: bool = False) -> bool:
        if not (force or self.due(step)):
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=grain.checkpoint.CheckpointSave(iterator))
        return self.manager.save(step, args=args, force=force)

    def restore_latest(self, state, shardings, iterator):
        """The latest checkpoint's state (and the iterator moved to its position), or None."""
        step = self.manager.latest_step()
        if step is None:
            return None
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(state, shardings)),
                                  data=grain.checkpoint.CheckpointRestore(iterator))
        return self.manager.restore(step, args=args)["state"]

    def restore_state(self, abstract_state):
        step = self.manager.latest_step()
        if step is None:
            return None
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        return self.manager.restore(step, args=args)["state"]

    def saved_state(self, step: int | None = None):
        """A checkpoint's train state as saved (no target shardings: arrays on the default
        device); for inspection and tests."""
        step = self.manager.latest_step() if step is None else step
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        return self.manager.restore(step, args=args)["state"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
