"""Config mistakes stop a run at start-up, naming the key, before data is read or a model built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from configs import default
from vidmix.training.config_checks import ConfigError, check_config, problems

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (override, the key the message must name)
MISTAKES = [
    ("train.num_steps=-5", "config.train.num_steps"),
    ("train.num_steps=0", "config.train.num_steps"),
    ("train.learning_rate=-0.1", "config.train.learning_rate"),
    ("train.checkpoint_every=0", "config.train.checkpoint_every"),
    ("train.log_every=0", "config.train.log_every"),
    ("eval.num_clips=0", "config.eval.num_clips"),
]


def _with(config, override: str):
    key, value = override.split("=")
    node = config
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = type(node[last])(float(value)) if "." in value else int(value)
    return config


@pytest.mark.parametrize("override,key", MISTAKES)
def test_each_mistake_is_named(override, key):
    found = problems(_with(default.get_config(), override))
    assert len(found) == 1 and found[0].startswith(key), found
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(_with(default.get_config(), override))


def test_shipped_configs_pass():
    assert problems(default.get_config()) == []
    for arg in ("space", "vtn", "pst"):
        assert problems(default.get_config(arg)) == []


def test_every_problem_is_listed_at_once():
    config = default.get_config()
    config.train.learning_rate = float("nan")
    config.train.momentum = 1.0
    config.data.crop = "centre"
    config.mesh.data = 0
    config.train.step_boundaries = (0.9, 0.7)
    found = problems(config)
    assert [line.split("=")[0] for line in found] == [
        "config.train.learning_rate", "config.train.momentum", "config.data.crop",
        "config.mesh.data", "config.train.step_boundaries"], found
    assert "one of 'jitter', 'rrc', 'multiscale'" in found[2]


def test_epochs_instead_of_steps_is_valid():
    config = default.get_config()
    config.train.num_steps = 0
    config.train.num_epochs = 2.0
    assert problems(config) == []


@pytest.mark.slow
def test_main_stops_at_start_up(tmp_path):
    """Each mistake through main.py as a user runs it: a non-zero exit naming the key, and
    nothing written (no dataset generated, no workdir)."""
    env = dict(os.environ, HOME=str(tmp_path), JAX_PLATFORMS="cpu")
    for override, key in MISTAKES:
        workdir = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "main.py"), f"--workdir={workdir}",
             f"--config.{override}"], capture_output=True, text=True, env=env, timeout=300,
            cwd=tmp_path)
        assert proc.returncode != 0, override
        assert key in proc.stderr, (override, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert not workdir.exists() and not (tmp_path / "vidmix_data").exists(), override


@pytest.mark.slow
def test_clips_longer_than_the_videos(tmp_path):
    """Clips longer than every video stop the run at start-up (one line, no traceback); longer
    than some videos, a warning that counts them."""
    env = dict(os.environ, HOME=str(tmp_path), JAX_PLATFORMS="cpu")
    base = [sys.executable, os.path.join(ROOT, "main.py"), "--config.data.build.num_train=8",
            "--config.data.build.num_val=8", "--config.train.num_steps=1",
            "--config.train.batch_size=8", "--config.eval.batch_size=8",
            f"--config.data.dir={tmp_path / 'data'}"]
    proc = subprocess.run(base + [f"--workdir={tmp_path / 'a'}", "--config.data.num_frames=64"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode != 0
    assert "config.data.num_frames=64" in proc.stderr and "16 frames" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # 8 frames at stride 3 need 22 > 16 stored frames in every video; at stride 2, 15 <= 16: fine
    proc = subprocess.run(base + [f"--workdir={tmp_path / 'b'}", "--config.data.stride=3"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode != 0 and "config.data.stride=3" in proc.stderr, proc.stderr[-2000:]


def test_clip_length_against_frame_counts(tmp_path, caplog):
    """The check reads the build report's frame counts (here rewritten to a mixed split)."""
    import json

    from vidmix.data import build_dataset, open_dataset
    from vidmix.data.from_config import check_clip_length
    from vidmix.data.tfds_builder import REPORT_FILE

    build_dataset("synthetic", None, tmp_path, task="direction", num_train=6, num_val=2,
                  num_frames=16, size=16, num_workers=1)
    report_file = open_dataset(tmp_path)[1] / REPORT_FILE
    report = json.loads(report_file.read_text())
    assert report["frame_counts"] == {"train": {"16": 6}, "val": {"16": 2}}
    report["frame_counts"] = {"train": {"8": 2, "40": 4}, "val": {"40": 2}}
    report_file.write_text(json.dumps(report))
    config = default.get_config()
    config.data.num_frames, config.data.stride = 8, 2  # 15 frames: 2 of 6 train videos short
    with caplog.at_level("WARNING", logger="vidmix"):
        check_clip_length(config, str(tmp_path))
    assert "2 of the 6 videos of split 'train' have fewer" in caplog.text
    config.data.num_frames = 32  # 63 frames: longer than every video
    with pytest.raises(ConfigError, match=r"config\.data\.num_frames=32 .* needs 63 frames"):
        check_clip_length(config, str(tmp_path))
    config.data.sampling = "segment"  # 32 frames, one per segment: fine for the 40-frame videos
    caplog.clear()
    with caplog.at_level("WARNING", logger="vidmix"):
        check_clip_length(config, str(tmp_path))
    assert "2 of the 6 videos" in caplog.text
