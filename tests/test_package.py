"""The package as users import it: lazy submodules, and the models without the data stack."""

import os
import subprocess
import sys
import textwrap

from test_main import ROOT

# What an accelerator image may lack: vidmix's models must not need any of it.
DATA_STACK = ("tensorflow_datasets", "grain", "av", "ml_collections", "tensorflow",
              "array_record")


def run_python(code: str, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_submodules_load_on_first_use(tmp_path):
    result = run_python("""
        import sys
        import vidmix
        assert "vidmix.data" not in sys.modules and "tensorflow_datasets" not in sys.modules
        print(vidmix.data.build_dataset.__name__, vidmix.training.__name__,
              vidmix.save_pretrained.__name__, vidmix.attention_rollout.__name__)
        assert "tensorflow_datasets" in sys.modules
        try:
            vidmix.no_such_thing
        except AttributeError as e:
            print("AttributeError", e)
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "build_dataset vidmix.training save_pretrained attention_rollout"
    assert "no_such_thing" in lines[1]


def test_models_and_weights_need_no_data_stack(tmp_path):
    """With tensorflow-datasets, grain, PyAV and ml_collections made unimportable, every family
    builds and runs, and a model folder round-trips."""
    result = run_python(f"""
        import importlib.abc, sys
        BLOCKED = {DATA_STACK!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked: " + name)

        sys.meta_path.insert(0, Block())
        import jax.numpy as jnp
        import numpy as np
        from flax import nnx
        import vidmix, vidmix.models
        from vidmix.models.cost import gmacs_per_view
        tiny = dict(num_classes=3, num_frames=4, image_size=16, rngs=nnx.Rngs(0))
        models = [vidmix.create_model("xvit_s16", width=32, depth=1, num_heads=2, patch_size=8,
                                      **tiny),
                  vidmix.create_model("vtn_vit_b16", width=32, depth=1, num_heads=2, patch_size=8,
                                      temporal_layers=1, temporal_heads=2, temporal_mlp_dim=64,
                                      **tiny),
                  vidmix.create_model("pst_tiny", embed_dim=16, depths=(2,), num_heads=(2,),
                                      window_size=2, **tiny)]
        video = jnp.ones((1, 4, 16, 16, 3))
        for i, m in enumerate(models):
            logits = m(video)
            vidmix.save_pretrained(m, f"m{{i}}")
            again = vidmix.from_pretrained(f"m{{i}}")
            assert np.array_equal(np.asarray(again(video)), np.asarray(logits))
        print(gmacs_per_view(models[0].config) > 0)
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == ["True", "[]"]
