"""read_torch_file: torch.save zip files read back with numpy only, and refused when unsafe."""

import os
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vidmix.checkpoints.errors import CheckpointError  # noqa: E402
from vidmix.checkpoints.torch_pickle import read_torch_file  # noqa: E402


def assert_same(array: np.ndarray, tensor) -> None:
    expected = tensor.detach().contiguous()
    if expected.dtype == torch.bfloat16:
        assert str(array.dtype) == "bfloat16"
        np.testing.assert_array_equal(array.astype(np.float32), expected.float().numpy())
        return
    expected = expected.numpy()
    assert array.dtype == expected.dtype and array.shape == expected.shape
    assert array.flags.c_contiguous
    np.testing.assert_array_equal(array, expected)


def test_dtypes_strides_and_shared_storage(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=g)
    sd = {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "i64": torch.arange(-5, 5),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "transposed": torch.randn(4, 6, generator=g).t(),  # non-contiguous
        "base": base,
        "view": base[2:, 1:4],  # shares base's storage, offset and strided
    }
    assert not sd["transposed"].is_contiguous() and sd["view"].storage_offset() == 13
    path = tmp_path / "mixed.pth"
    torch.save(sd, path)
    out = read_torch_file(str(path))
    assert sorted(out) == sorted(sd)
    for name, tensor in sd.items():
        assert_same(out[name], tensor)


def test_nested_training_checkpoint(tmp_path):
    model = OrderedDict(cls_token=torch.randn(1, 1, 8), **{"blocks.0.w": torch.randn(8, 8)})
    w = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([w])
    w.sum().backward()
    opt.step()
    ckpt = {"model_state": model, "epoch": 3, "optimizer_state": opt.state_dict(),
            "cfg": "TRAIN:\n  ENABLE: True\n", "best": np.float64(0.5), "seen": np.int64(7)}
    path = tmp_path / "ckpt.pyth"
    torch.save(ckpt, path)
    out = read_torch_file(path)
    model_keys = sorted(k for k in out if k.startswith("model_state."))
    assert model_keys == ["model_state.blocks.0.w", "model_state.cls_token"]
    for name, tensor in model.items():
        assert_same(out[f"model_state.{name}"], tensor)
    # optimizer tensors are kept too, under their own prefix
    assert_same(out["optimizer_state.state.0.exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert not any(k.startswith(("epoch", "cfg", "best", "seen")) for k in out)


def test_parameters_and_plain_dict_wrappers(tmp_path):
    lin = torch.nn.Linear(4, 3)
    torch.save({"state_dict": {"weight": lin.weight, "bias": lin.bias}}, tmp_path / "p.pt")
    out = read_torch_file(tmp_path / "p.pt")
    assert_same(out["state_dict.weight"], lin.weight)
    assert_same(out["state_dict.bias"], lin.bias)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_global_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(2), "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=r"(os|posix|nt)\.system") as info:
        read_torch_file(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_truncated_file(tmp_path):
    path = tmp_path / "full.pth"
    torch.save({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        read_torch_file(cut)


def test_legacy_format_is_refused(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        read_torch_file(path)


def test_module_state_dict_bin(tmp_path):
    lin = torch.nn.Linear(4, 3)
    path = tmp_path / "pytorch_model.bin"
    torch.save(lin.state_dict(), path)
    out = read_torch_file(str(path))
    assert sorted(out) == ["bias", "weight"]
    for name, tensor in lin.state_dict().items():
        assert_same(out[name], tensor)
