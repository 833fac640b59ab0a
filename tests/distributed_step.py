"""One train step of a tiny model over 8 CPU devices, in 1 process or in 2 joined by
jax.distributed (gloo collectives). Prints the loss and a parameter checksum as JSON.

    python tests/distributed_step.py DATA_DIR NUM_PROCESSES PROCESS_ID PORT
"""

import json
import os
import sys

num_processes, process_id = int(sys.argv[2]), int(sys.argv[3])
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={8 // num_processes}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

if num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{sys.argv[4]}", num_processes, process_id)

from configs.default import get_config  # noqa: E402
from vidmix.training.mesh import global_batch  # noqa: E402
from vidmix.training.steps import make_train_step  # noqa: E402
from vidmix.training.trainer import setup  # noqa: E402


def main():
    c = get_config()
    c.model.overrides = dict(width=32, depth=2, num_heads=2, patch_size=8)
    c.data.dir = sys.argv[1]
    c.data.num_frames, c.data.image_size = 4, 16
    c.train.optimizer, c.train.learning_rate = "sgd", 0.1
    c.mesh.data, c.mesh.fsdp, c.mesh.fsdp_min_size = 2, 4, 256
    exp = setup(c, "/tmp/unused")
    rng = np.random.default_rng(0)
    full = {"video": rng.standard_normal((16, 4, 16, 16, 3)).astype(np.float32),
            "label": rng.integers(0, 2, 16).astype(np.int32), "mask": np.ones(16, np.float32)}
    per = 16 // num_processes  # each process feeds its own slice of the global batch
    local = {k: v[process_id * per:(process_id + 1) * per] for k, v in full.items()}
    step = jax.jit(make_train_step(exp.graphdef, exp.tx, num_classes=2),
                   out_shardings=(exp.state_shardings, None))
    state, metrics = step(exp.state, global_batch(local, exp.mesh), exp.rest)
    from jax.experimental import multihost_utils

    leaves = [multihost_utils.process_allgather(x, tiled=True)
              for x in jax.tree.leaves(state["params"])]
    checksum = float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in leaves))
    print(json.dumps({"loss": float(metrics["loss"]), "checksum": checksum,
                      "devices": jax.device_count(), "processes": jax.process_count()}))


if __name__ == "__main__":
    main()
