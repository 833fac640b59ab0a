"""The README's main command, run the way a new user runs it: in a fresh copy of the repository's
files (what a clone holds), with a fresh HOME, exactly as the README spells it."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from test_main import ROOT


def repository_files() -> list[str]:
    """What a clone of the next commit holds: tracked files plus new files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def readme_commands() -> list[str]:
    """The README's set-up commands: the indented command lines of its Set-up section."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if re.match(r"^ {4}\S", line)]


def fresh_clone(tmp_path):
    """A copy of the repository's files, a fresh HOME, and a virtual environment layered on this
    one (its packages are seen, so the README's `pip install -e .` installs only vidmix itself,
    and installs it there: this environment's vidmix is left alone)."""
    clone = tmp_path / "clone"
    for name in repository_files():
        os.makedirs(clone / os.path.dirname(name), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), clone / name)
    home = tmp_path / "home"
    home.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    # a new user's environment: fresh HOME, no test-only XLA flags, nothing on PYTHONPATH
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "PYTHONPATH", "JAX_PLATFORMS", "PYTHONHOME")}
    env.update(HOME=str(home), VIRTUAL_ENV=str(venv),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    return clone, env


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("python main.py"), commands
    assert commands[1].endswith("python -m pytest"), commands
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert commands[1] in ci  # CI runs the README's test command


def test_no_run_output_is_in_the_repository():
    files = repository_files()
    assert not [f for f in files if f.startswith(("runs/", "workdir/", "data/"))]
    assert not [f for f in files if re.search(r"(events\.out\.tfevents|_CHECKPOINT_METADATA|"
                                              r"\.array_record)", f)]


@pytest.mark.slow
def test_readme_main_command_trains_the_demo_from_scratch(tmp_path):
    clone, env = fresh_clone(tmp_path)
    result = subprocess.run(["bash", "-c", readme_commands()[0]], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    # vidmix was installed from the clone, into the new environment
    where = subprocess.run(["python", "-c", "import vidmix; print(vidmix.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.strip() == str(clone / "vidmix" / "__init__.py"), where
    # the dataset is generated under the new HOME, and the run starts at step 0
    assert (tmp_path / "home" / "vidmix_data").is_dir()
    assert "resumed" not in result.stderr
    rows = [json.loads(line) for line in open(clone / "runs" / "default" / "metrics.jsonl")]
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps[0] == 10 and train_steps[-1] == 300, train_steps
    # the accuracy the README documents for the demo
    line = [x for x in result.stdout.splitlines() if x.startswith("eval")][-1]
    top1 = float(line.split("top-1 ")[1].split("%")[0])
    assert top1 >= 90, result.stdout
    # every log message printed once (not once by Python logging and again by absl)
    messages = [x for x in result.stderr.splitlines() if "generating the synthetic dataset" in x]
    assert len(messages) == 1, messages
