"""Reading a run's checkpoints as saved, for tests: the train state of one step, arrays on the
default device, without the model it came from."""

import os

import orbax.checkpoint as ocp


def saved_state(checkpoint_dir, step: int | None = None) -> dict:
    """The train state ({"params", "opt_state", "step"}) of `step` (None: the newest)."""
    manager = ocp.CheckpointManager(os.fspath(checkpoint_dir))
    try:
        step = manager.latest_step() if step is None else step
        args = ocp.args.Composite(state=ocp.args.StandardRestore())
        return manager.restore(step, args=args)["state"]
    finally:
        manager.close()


def latest_step(checkpoint_dir) -> int | None:
    manager = ocp.CheckpointManager(os.fspath(checkpoint_dir))
    try:
        return manager.latest_step()
    finally:
        manager.close()
