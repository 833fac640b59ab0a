"""What users have on disk, turned into a build plan: which video goes into which split with which
label. One small reader per layout, registered in `KINDS`.

    video_folder  root/<class>/<video> (UCF101, HMDB51), optionally with UCF101 / HMDB51 split
                  lists, or root/{train,val,test}/<class>/<video>
    kinetics_csv  Kinetics CSVs `label,youtube_id,time_start,time_end[,split]` (files named
                  `<youtube_id>_<start:06d>_<end:06d>.<ext>` or `<youtube_id>.<ext>`), or a plain
                  `path,label` CSV
    ssv2_json     Something-Something-v2: `<id>.webm` files, split JSON lists (`id`, `template`)
                  and the labels JSON (`name -> index`)
    synthetic     the locally generated temporal task of `synthetic.py` (no files)

Annotated videos that cannot be found are not fatal: they go to the plan's `missing` list, which
ends up in the build report next to the files that failed to decode.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from pathlib import Path

from vidmix.data import synthetic as synthetic_lib

SPLIT_ALIASES = {"validate": "val", "validation": "val", "valid": "val", "training": "train",
                 "testing": "test"}

# Suffixes of video containers: a folder named like one is reported, not walked into.
VIDEO_SUFFIXES = frozenset({".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg",
                            ".mpg", ".ogv", ".ts", ".webm", ".wmv"})


@dataclasses.dataclass(frozen=True)
class Entry:
    """One video of a plan: its unique key, class index, and file path or synthetic recipe."""

    key: str  # unique within the dataset
    label: int
    path: str = ""  # the video file; empty for generated videos
    synthetic: tuple | None = None  # (task, seed, num_frames, size) for generated videos


@dataclasses.dataclass
class Plan:
    """A dataset to build: its name, sorted class names, split -> entries, (video, reason) for every
    annotated video not found, and metadata for the builder."""

    name: str
    class_names: list[str]
    splits: dict[str, list[Entry]]
    missing: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    metadata: dict = dataclasses.field(default_factory=dict)  # e.g. allow_flip


def _split_name(name: str) -> str:
    name = name.strip().lower()
    return SPLIT_ALIASES.get(name, name)


def _files(folder: Path) -> list[Path]:
    """Every regular, non-hidden file below `folder`, and every folder named like a video file
    (`clip.mp4/`, not walked into). No extension filter: a file that is not a video, or such a
    folder, is reported as skipped by the build, not silently ignored."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        names = sorted(d for d in dirnames if not d.startswith("."))
        like_videos = [d for d in names if Path(d).suffix.lower() in VIDEO_SUFFIXES]
        dirnames[:] = [d for d in names if d not in like_videos]
        out += sorted([Path(dirpath) / f for f in filenames if not f.startswith(".")]
                      + [Path(dirpath) / d for d in like_videos])
    return out


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _plan(name, labelled: dict[str, list[tuple[str, str, str]]], missing=(), **metadata) -> Plan:
    """labelled: split -> [(key, path, class name)]; classes are sorted names (the field's
    convention for Kinetics, UCF101 and HMDB51 class indices)."""
    class_names = sorted({c for rows in labelled.values() for _, _, c in rows})
    index = {c: i for i, c in enumerate(class_names)}
    splits = {s: [Entry(k, index[c], p) for k, p, c in rows] for s, rows in labelled.items()}
    return Plan(name, class_names, splits, list(missing), dict(metadata))


def video_folder(source, *, split_files: str | None = None, split_id: int = 1,
                 name: str | None = None) -> Plan:
    """`source/<class>/<video>`; or `source/<split>/<class>/<video>` when `source` holds train /
    val / test folders; with `split_files` (a folder of UCF101 `trainlist0K.txt`/`testlist0K.txt`
    or HMDB51 `<class>_test_splitK.txt` files) the official split `split_id` is used."""
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} does not exist")
    name = name or root.name
    top = _subdirs(root)
    split_dirs = [d for d in top if _split_name(d.name) in ("train", "val", "test")]
    if split_dirs:
        labelled = {}
        for d in split_dirs:
            rows = labelled.setdefault(_split_name(d.name), [])
            for cls in _subdirs(d):
                rows += [(str(f.relative_to(root)), str(f), cls.name) for f in _files(cls)]
        return _plan(name, labelled)
    by_rel = {str(f.relative_to(root)): (f, cls.name) for cls in top for f in _files(cls)}
    if not split_files:
        return _plan(name, {"train": [(r, str(f), c) for r, (f, c) in by_rel.items()]})
    return _plan(name, *_official_splits(Path(split_files), split_id, by_rel))


def _official_splits(folder: Path, k: int, by_rel: dict):
    """UCF101 (`trainlist0K.txt`, `testlist0K.txt`: `Class/file.avi [label]`) or HMDB51
    (`<class>_test_splitK.txt`: `file.avi 1|2|0` for train / test / unused)."""
    labelled, missing = {"train": [], "test": []}, []
    by_name = {Path(r).name: r for r in by_rel}

    def add(split, rel):
        rel = rel.replace("\\", "/")
        key = rel if rel in by_rel else by_name.get(Path(rel).name)
        if key is None:
            missing.append((rel, "listed in the split files but not found"))
        else:
            labelled[split].append((key, str(by_rel[key][0]), by_rel[key][1]))

    ucf = {s: folder / f"{s}list{k:02d}.txt" for s in ("train", "test")}
    hmdb = sorted(folder.glob(f"*_test_split{k}.txt"))
    if all(p.exists() for p in ucf.values()):
        for split, path in ucf.items():
            for line in path.read_text().split("\n"):
                if line.strip():
                    add(split, line.split()[0])
    elif hmdb:
        for path in hmdb:
            for line in path.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2 and parts[1] in ("1", "2"):
                    add("train" if parts[1] == "1" else "test", parts[0])
    else:
        raise FileNotFoundError(f"no UCF101 (trainlist{k:02d}.txt, testlist{k:02d}.txt) or "
                                f"HMDB51 (*_test_split{k}.txt) split files in {folder}")
    return labelled, missing


def _index_by_stem(root: Path) -> dict[str, Path]:
    return {f.stem: f for f in _files(root)}


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k}
                for row in csv.DictReader(f)]


def kinetics_csv(source, *, annotations, name: str | None = None) -> Plan:
    """`annotations`: one CSV (with a `split` column) or {split: csv}. Kinetics columns
    `label,youtube_id,time_start,time_end` or plain `path,label` (paths relative to `source`)."""
    root = Path(source)
    files = _index_by_stem(root)
    if isinstance(annotations, (str, os.PathLike)):
        annotations = {None: annotations}
    labelled, missing = {}, []
    for split, path in annotations.items():
        for row in _read_csv(path):
            cols = set(row)
            if {"label", "youtube_id", "time_start", "time_end"} <= cols:
                key = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_" \
                      f"{int(float(row['time_end'])):06d}"
                video = files.get(key) or files.get(row["youtube_id"])
            elif {"path", "label"} <= cols:
                key, video = row["path"], root / row["path"]
                video = video if video.is_file() else None
            else:
                raise ValueError(f"{path}: unknown CSV columns {sorted(cols)}; expected "
                                 "label,youtube_id,time_start,time_end[,split] or path,label")
            row_split = _split_name(split or row.get("split") or "train")
            if video is None:
                missing.append((key, f"listed in {Path(path).name} but not found"))
            else:
                labelled.setdefault(row_split, []).append((key, str(video), row["label"]))
    return _plan(name or root.name, labelled, missing)


def ssv2_json(source, *, annotations: dict, labels, name: str | None = None) -> Plan:
    """`annotations`: {split: json list of {"id", "template"}}; `labels`: json {name: index}.
    Templates name their class with placeholders in brackets ("Pushing [something] from left to
    right"); the labels file has them without. Flipping is off for this dataset: left and right
    are part of the labels."""
    root = Path(source)
    files = _index_by_stem(root)
    label_index = {k: int(v) for k, v in json.loads(Path(labels).read_text()).items()}
    class_names = [n for n, _ in sorted(label_index.items(), key=lambda kv: kv[1])]
    splits, missing = {}, []
    for split, path in annotations.items():
        rows = splits.setdefault(_split_name(split), [])
        for item in json.loads(Path(path).read_text()):
            if "template" not in item:
                raise ValueError(f"{path}: entry {item.get('id')} has no 'template' (unlabelled "
                                 "test lists cannot be built into a labelled dataset)")
            cls = re.sub(r"[\[\]]", "", item["template"])
            if cls not in label_index:
                raise ValueError(f"{path}: class {cls!r} of video {item['id']} is not in {labels}")
            video = files.get(str(item["id"]))
            if video is None:
                missing.append((str(item["id"]), f"listed in {Path(path).name} but not found"))
            else:
                rows.append(Entry(str(item["id"]), label_index[cls], str(video)))
    return Plan(name or root.name, class_names, splits, missing, {"allow_flip": False})


def synthetic(source=None, *, task: str = "direction", num_train: int = 512, num_val: int = 128,
              num_frames: int = 16, size: int = 64, seed: int = 0,
              name: str | None = None) -> Plan:
    """The generated temporal task; `source` is unused. Labels alternate so classes balance."""
    if task not in synthetic_lib.TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; choose from "
                         f"{sorted(synthetic_lib.TASKS)}")
    splits = {}
    for offset, (split, n) in enumerate((("train", num_train), ("val", num_val))):
        splits[split] = [Entry(f"{split}_{i:06d}", i % 2, "",
                               (task, seed * 1_000_003 + offset * 100_000_007 + i, num_frames,
                                size)) for i in range(n)]
    return Plan(name or f"synthetic_{task}", list(synthetic_lib.TASKS[task]), splits,
                metadata={"allow_flip": False})  # a mirror image reverses both labels


KINDS = {"video_folder": video_folder, "kinetics_csv": kinetics_csv, "ssv2_json": ssv2_json,
         "synthetic": synthetic}
