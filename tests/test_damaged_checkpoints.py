"""Damaged checkpoints, run as a user runs main.py: the newest step damaged five ways, every step
damaged, and eval / predict / export of a run whose newest step is damaged. One trained run (steps 2, 4
and 6) is copied for each case."""

import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from saved_checkpoints import saved_state
from test_main import ROOT
from test_training import _flags, _leaves, _main
from video_files import moving_bar_frames, write_video

from vidmix.data import build_dataset

# damage: what the rerun's report of the step says
DAMAGES = {"truncated_data_file": "Error reading", "deleted_data_file": "Error reading",
           "empty_metadata": "state/_METADATA (empty)",
           "deleted_iterator_state": "process_0-of-1.json does not exist",
           "flipped_bytes": ("differ from their saved checksums", "Error reading")}


def damage(step_dir, kind: str) -> None:
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    data = max(files, key=os.path.getsize)  # the largest array-data file
    size = os.path.getsize(data)
    # Truncation and deletion hit every array-data file: OCDBT's data files also hold bytes the
    # final step no longer refers to, so half of the largest file alone was once spared whole
    # (the damage went unnoticed because nothing read was damaged)
    if kind == "truncated_data_file":
        for f in files:
            os.truncate(f, os.path.getsize(f) // 2)
    elif kind == "deleted_data_file":
        for f in files:
            os.remove(f)
    elif kind == "empty_metadata":
        open(os.path.join(step_dir, "state", "_METADATA"), "w").close()
    elif kind == "deleted_iterator_state":
        os.remove(os.path.join(step_dir, "data", "process_0-of-1.json"))
    else:  # 64 bytes flipped at a quarter, half and three quarters of the file: one spot alone
        # may fall on bytes no array uses (nothing damaged); an altered chunk then decompresses to
        # other numbers (caught by the checksums) or fails to decompress (a read error)
        with open(data, "r+b") as f:
            for at in (size // 4, size // 2, 3 * size // 4):
                f.seek(at)
                flipped = bytes(b ^ 0xFF for b in f.read(64))
                f.seek(at)
                f.write(flipped)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(workdir, flags) of a finished tiny run with checkpoints at steps 2, 4 and 6."""
    root = tmp_path_factory.mktemp("damaged")
    data = build_dataset("synthetic", None, root / "data", num_train=16, num_val=8, num_frames=8,
                         size=16, num_workers=1).data_dir
    flags = _flags({"data.dir": data, "data.num_frames": 4, "data.image_size": 16,
                    "train.batch_size": 8, "train.num_steps": 6, "train.checkpoint_every": 2,
                    "train.keep_checkpoints": 3, "eval.batch_size": 8, "eval.num_clips": 1,
                    "model.overrides.width": 32, "model.overrides.depth": 2,
                    "model.overrides.num_heads": 2})
    result = _main(["--workdir", str(root / "run"), *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(root / "run" / "checkpoints")) == ["2", "4", "6"]
    return root / "run", flags


def _copy(trained, tmp_path, damaged: dict):
    """A copy of the trained run with {step: damage} applied."""
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    for step, kind in damaged.items():
        damage(run / "checkpoints" / str(step), kind)
    return run


def _saved(workdir, step):
    return _leaves(saved_state(os.path.join(workdir, "checkpoints"), step))


@pytest.mark.slow
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_newest_step_is_reported_and_training_resumes_before_it(trained, tmp_path,
                                                                          kind):
    run = _copy(trained, tmp_path, {6: kind})
    result = _main(["--workdir", str(run), *trained[1]])
    assert result.returncode == 0, result.stderr[-3000:]
    err = result.stderr
    report = f"checkpoint step 6 in {run}/checkpoints is damaged: "
    assert err.count(report) == 1 and err.count("is damaged") == 1, err[-3000:]
    said = err.split(report)[1].splitlines()[0]
    wanted = DAMAGES[kind] if isinstance(DAMAGES[kind], tuple) else (DAMAGES[kind],)
    assert any(w in said for w in wanted), said
    assert err.count("falling back to step 4") == 1 and err.count("resumed from step 4") == 1
    assert "Traceback" not in err
    assert os.listdir(run / "checkpoints_damaged") == ["6"]  # moved aside, not deleted
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]
    # step 6 trained again from step 4 is the uninterrupted run's step 6, bit for bit
    for a, b in zip(_saved(run, 6), _saved(trained[0], 6), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_no_intact_step_stops_with_one_line_and_deletes_nothing(trained, tmp_path):
    run = _copy(trained, tmp_path, {6: "truncated_data_file", 4: "empty_metadata",
                                    2: "flipped_bytes"})
    result = _main(["--workdir", str(run), *trained[1]])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: no intact checkpoint in {run}/checkpoints: step(s) 6, 4, 2 ")
    assert "use a new --workdir" in last
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]
    assert not os.path.exists(run / "checkpoints_damaged")
    # export reads the parameters alone, which these damages may have spared: take them all away
    for step in (6, 2):
        damage(run / "checkpoints" / str(step), "empty_metadata")
    exported = subprocess.run([sys.executable, "-m", "vidmix.export", str(run),
                               str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert exported.returncode == 1 and "Traceback" not in exported.stderr
    assert exported.stderr.strip().splitlines()[-1].startswith("error: no intact checkpoint in")


@pytest.mark.slow
def test_eval_predict_and_export_use_the_newest_intact_step(trained, tmp_path):
    from vidmix.export import export
    from vidmix.training.checkpointing import DamagedCheckpointError

    # an empty _METADATA: the parameters cannot be read (a damaged data file may hold none)
    run = _copy(trained, tmp_path, {6: "empty_metadata"})
    result = _main(["--workdir", str(run), *trained[1], "--mode=eval"])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.count("checkpoint step 6") == 1
    assert result.stderr.count(f"using step 4 of {run}/checkpoints") == 1
    assert "eval (8 videos, 1x1 views): top-1" in result.stdout
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4", "6"]  # eval moves nothing
    video = tmp_path / "bar.mp4"
    write_video(video, moving_bar_frames(12, h=24, w=32))
    result = _main(["--workdir", str(run), *trained[1], "--mode=predict", f"--video={video}"])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.count(f"using step 4 of {run}/checkpoints") == 1
    assert len(result.stdout.strip().splitlines()) == 2  # both classes' probabilities
    assert export(str(run), str(tmp_path / "model"))[1] == 4
    with pytest.raises(DamagedCheckpointError, match="step 6 .* is damaged"):
        export(str(run), str(tmp_path / "model6"), step=6)
