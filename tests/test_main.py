"""The entry point, run as a user runs it."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_zoo_prints_params_and_gflops():
    out = run_main("--mode=zoo", "--config.zoo.models=xvit_b16,timesformer_b16")
    assert out.returncode == 0, out.stderr
    rows = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
            re.finditer(r"\| (\w+) \|.*\| ([\d.]+) \| ([\d.]+) \|", out.stdout)}
    assert set(rows) == {"xvit_b16", "timesformer_b16"}
    assert abs(rows["xvit_b16"][1] - 142) / 142 < 0.02  # the paper's 425 GFLOPs / 3 views
    assert abs(rows["timesformer_b16"][0] - 121.4) < 0.5  # million parameters


def test_bad_flags_say_what_to_fix():
    out = run_main("--mode=nonsense")
    assert out.returncode != 0 and "unknown --mode='nonsense'; modes: train, eval, predict, zoo" in out.stderr
    out = run_main("--mode=zoo", "--config.zoo.modles=xvit_b16")
    assert out.returncode != 0 and 'Did you mean "models"' in out.stderr
    out = run_main("--mode=zoo", "--config.zoo.models=xvit_b61")
    assert out.returncode != 0 and "unknown model 'xvit_b61'" in out.stderr
