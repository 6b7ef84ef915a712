"""wfm.core through Python: checkpoint reading equals torch.load / torch.jit.load, tensors cross without copies,
load_checkpoint fills Python modules in place with one complete error, Status -> exception mapping, the GIL is
released, progress callbacks call Python."""
import faulthandler
import os
import pathlib
import subprocess
import sys
import threading

import pytest
import torch

import wfm
import wfm.core as core


def _assert_same(got, ref):
    assert sorted(got) == sorted(ref)
    for name, r in ref.items():
        g = got[name]
        assert g.dtype == r.dtype, name
        assert g.shape == r.shape, name
        assert torch.equal(g, r), name


@pytest.mark.parametrize("name", ["state_dict.pt", "nested.pt", "protocol4.pt", "legacy.pt", "complex.pt", "cosmos_model.pt"])
def test_torch_save_files_read_like_torch_load(data_dir, gen, name):
    ref = gen.flatten(torch.load(data_dir / name))  # the generator's flattening of what Python's torch.load gives
    _assert_same(core.read_tensor_file(data_dir / name), ref)
    index = core.list_tensor_file(data_dir / name)
    assert sorted(index.names()) == sorted(ref)
    for info in index.tensors:
        assert info.dtype == ref[info.name].dtype and info.shape == tuple(ref[info.name].shape)
        assert info.nbytes == ref[info.name].numel() * ref[info.name].element_size()


@pytest.mark.parametrize("name", ["traced_bf16.jit", "scripted.jit"])
def test_torchscript_files_give_parameters_and_buffers(data_dir, name):
    module = torch.jit.load(str(data_dir / name))
    ref = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    _assert_same(core.read_tensor_file(data_dir / name), {k: v.detach() for k, v in ref.items()})
    assert core.tensor_file_format(data_dir / name) == "torchscript"


def test_sharded_index_and_selective_read(data_dir):
    full = core.read_tensor_file(data_dir / "sharded_bin")
    assert core.tensor_file_format(data_dir / "sharded_st") == "sharded-index"
    _assert_same(core.read_tensor_file(data_dir / "sharded_st" / "model.safetensors.index.json"), full)
    some = core.read_tensor_file(data_dir / "sharded_bin", names=["decoder.2.bias"])
    assert list(some) == ["decoder.2.bias"]


def test_tensors_cross_without_copies(data_dir, tmp_path):
    # out: views of the mapped file, aliasing as in the file
    t = core.read_tensor_file(data_dir / "nested.pt")
    assert t["views.row"].data_ptr() == t["views.base"].data_ptr() + 4 * 4
    assert t["views.t"].stride() == (1, 4)
    core.write_safetensors(tmp_path / "a.safetensors", {"x": torch.arange(1000.0), "y": torch.ones(3, 4).t()},
                           {"note": "hi"})
    f = core.SafetensorsFile(tmp_path / "a.safetensors")
    assert f.metadata == {"note": "hi"} and "x" in f and len(f) == 2
    assert f["x"].data_ptr() == f.get("x").data_ptr() != f.get("x", copy=True).data_ptr()
    assert torch.equal(core.read_safetensors(tmp_path / "a.safetensors")["y"], torch.ones(4, 3))
    # in: load_checkpoint writes into the caller's tensors in place
    target = {"x": torch.zeros(1000), "y": torch.zeros(4, 3, dtype=torch.float64)}
    ptrs = {k: v.data_ptr() for k, v in target.items()}
    report = core.load_checkpoint(target, tmp_path / "a.safetensors")
    assert {k: v.data_ptr() for k, v in target.items()} == ptrs
    assert torch.equal(target["x"], torch.arange(1000.0)) and target["y"].sum().item() == 12
    assert report.loaded == 2 and report.conversions == {"F32->F64": 1}


def test_load_checkpoint_into_python_modules(data_dir, gen, tmp_path):
    raw = core.read_safetensors(data_dir / "cosmos_model.raw.ref.safetensors")
    ema = core.read_safetensors(data_dir / "cosmos_model.ema.ref.safetensors")
    net = gen.Net()
    report = core.load_checkpoint(net, data_dir / "cosmos_model.pt")
    assert report.loaded == 9 and report.dropped == 8, report.summary()
    _assert_same(net.state_dict(), raw)
    core.load_checkpoint(net, data_dir / "cosmos_model.pt", rules="ema")
    _assert_same(net.state_dict(), ema)
    # the bf16 TorchScript file into an f32 module: converted on copy
    report = core.load_checkpoint(net, data_dir / "traced_bf16.jit")
    assert report.conversions == {"BF16->F32": 9}
    # rules as data, PathLike lists
    net2 = gen.Net()
    path = tmp_path / "prefixed.safetensors"
    core.write_safetensors(path, {"backbone." + k: v for k, v in raw.items()})
    with pytest.raises(ValueError, match=r'strip_prefix": "backbone\.'):
        core.load_checkpoint(net2, path, rules="none")
    core.load_checkpoint(net2, [path], rules=[{"strip_prefix": "backbone."}])
    _assert_same(net2.state_dict(), raw)


def test_strict_load_reports_every_problem_and_changes_nothing(data_dir):
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.SiLU(), torch.nn.Linear(5, 3))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ValueError) as info:
        core.load_checkpoint(module, data_dir / "state_dict.pt")
    message = str(info.value)
    assert info.value.status_code == "INVALID_ARGUMENT"
    for needle in ["9 unknown", "4 missing", "encoder.conv.weight", "2.weight  F32 [3, 5]", "nothing was loaded",
                   "state_dict.pt", "HINT", "decoder."]:
        assert needle in message, message
    _assert_same(module.state_dict(), before)
    report = core.load_checkpoint({"decoder.0.weight": torch.zeros(5, 4)}, data_dir / "state_dict.pt",
                                  allow_unexpected=True)
    assert report.loaded == 1 and len(report.unexpected) == 8


def test_status_becomes_the_right_exception(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        core.read_tensor_file(tmp_path / "missing.pt")
    assert isinstance(e.value, OSError) and e.value.status_code == "NOT_FOUND" and "missing.pt" in str(e.value)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    with pytest.raises(ValueError, match="bad.pt"):
        core.read_tensor_file(bad)
    with pytest.raises(ValueError, match="unknown name-rule preset"):
        core.load_checkpoint({}, data_dir / "state_dict.pt", rules="no-such-preset")
    with pytest.raises(TypeError):
        core.load_checkpoint(42, data_dir / "state_dict.pt")
    with pytest.raises(ValueError):
        core.parse_device("tpu")
    if not core.cuda_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            core.parse_device("cuda")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.safetensors"
        core.write_safetensors(locked, {"a": torch.ones(1)})
        locked.chmod(0)
        with pytest.raises(PermissionError):
            core.read_safetensors(locked)


def test_long_calls_release_the_gil(tmp_path):
    # The reader blocks in open() on a FIFO until a writer appears. The writer is this (Python) thread: it can only
    # run if the reading thread released the GIL. A hang here means it did not (faulthandler ends the run).
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    result = {}

    def reader():
        try:
            core.read_safetensors(fifo)
        except Exception as e:  # noqa: BLE001 -- a FIFO is not a valid file; any clean error is fine
            result["error"] = e

    faulthandler.dump_traceback_later(120, exit=True)
    try:
        t = threading.Thread(target=reader)
        t.start()
        fd = os.open(fifo, os.O_WRONLY)  # blocks until the reader's open()
        os.close(fd)
        t.join()
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert isinstance(result.get("error"), (ValueError, OSError)), result


def test_progress_calls_python(capfd):
    seen = []
    with core.Progress("frames", total=10, unit="frames", quiet=True, log_interval_s=0, callback=lambda d, t: seen.append((d, t))) as p:
        p.add(4)
        p.add()
        p.set_status("loss 0.5")
        assert p.done == 5
    assert seen[-1] == (5, 10)
    assert "frames: 5 frames in" in p.finish()
    boom = core.Progress("x", quiet=True, log_interval_s=0)
    boom.set_callback(lambda d, t: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        boom.finish()
    with pytest.raises(TypeError):
        boom.set_callback(3)


def test_runtime_and_logging():
    assert core.init_threads(1) == 1
    assert core.default_num_threads() >= 1
    assert core.parse_device("cpu") == torch.device("cpu")
    assert core.parse_device("auto").type in ("cpu", "cuda")
    assert "torch" in core.runtime_summary()
    level = core.get_log_level()
    core.set_log_level("warning")
    assert core.get_log_level() == "warning"
    core.set_log_level(level)
    with pytest.raises(ValueError):
        core.set_log_level("loud")


def test_name_rules_are_data():
    rules = core.parse_name_rules("ema")
    assert rules[0] == {"strip_prefix": "module."} and {"prefer_prefix": "ema."} in rules
    m = core.map_names(["network.a.w", "ema.network-a-w", "x"], "ema")
    assert m["renamed"] == {"ema.network-a-w": "a.w", "x": "x"} and m["dropped"] == ["network.a.w"]
    m = core.map_names(["model.a", "blk.3.w"], [{"regex": r"^blk\.(\d+)\.", "to": "blocks.$1."}], expected=["model.a"])
    assert m["renamed"] == {"model.a": "model.a", "blk.3.w": "blocks.3.w"}


def test_package_layout():
    assert wfm.core is core and "core" in wfm.__all__
    assert wfm.__version__
    assert core.read_tensor_file.__doc__ and "zero-copy" in core.read_tensor_file.__doc__


def test_large_block_cpu_allocator_in_a_fresh_process():
    # Process-wide and permanent: run it in its own interpreter so the other tests keep torch's allocator.
    code = (
        "import torch, wfm.core as c\n"
        "assert c.cpu_allocator_stats()['large_allocations'] == 0\n"
        "assert c.install_large_block_cpu_allocator(0)\n"
        "a = torch.arange(4 << 20, dtype=torch.float32)\n"
        "assert a.data_ptr() % (2 << 20) == 0\n"
        "assert float((a + 1)[-1]) == float(4 << 20)\n"
        "p = a.data_ptr(); del a\n"
        "b = torch.empty(4 << 20)\n"
        "s = c.cpu_allocator_stats()\n"
        "assert s['large_allocations'] >= 2 and s['reused'] >= 1, s\n"
        "print('ok')\n")
    env = dict(os.environ)
    env.pop("WFM_CPU_ALLOCATOR", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
