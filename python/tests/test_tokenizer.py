"""wfm.tokenizer through Python: parity with the reference fixtures (../shared/fixtures/tokenizer) and with the
`wfm tokenizer` CLI, zero-copy state dicts, streaming == whole, autograd through the native network, errors."""
import os
import pathlib
import subprocess

import pytest
import torch

import wfm

if "tokenizer" not in wfm.__all__:
    pytest.skip("this build has no tokenizer bindings", allow_module_level=True)
import wfm.core as core
import wfm.tokenizer as tk

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = pathlib.Path(os.environ.get("WFM_SHARED_DIR", ROOT.parent / "shared")) / "fixtures" / "tokenizer"
needs_fixtures = pytest.mark.skipif(not (FIX / "CV8x8x8.weights.safetensors").exists(), reason=f"missing {FIX}")


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def load(name, **kw):
    return tk.Tokenizer.from_files(FIX / f"{name}.json", FIX / f"{name}.weights.safetensors", **kw)


@needs_fixtures
@pytest.mark.parametrize("name", ["CV8x8x8", "CV4x8x8", "DV8x16x16", "CI8x8", "DI16x16"])
def test_fixture_parity(name):
    io = core.read_safetensors(FIX / f"{name}.io.safetensors")
    tok = load(name)
    enc = tok.encode(io["input"])
    if "indices" in io:
        assert tok.is_discrete and enc.indices.dtype == torch.int64
        assert torch.equal(enc.indices, io["indices"]), name
        assert rel(enc.latent, io["codes"]) <= 1e-4
        assert torch.equal(tok.indices_to_codes(enc.indices), enc.latent)
        assert torch.equal(tok.codes_to_indices(enc.latent), enc.indices)
        rec = tok.decode(enc.indices, enc.geometry)
        want = io["reconstruction_from_indices"]
    else:
        assert enc.indices is None
        assert rel(enc.latent, io["latent"]) <= 1e-4, f"{name}: latent max rel diff {rel(enc.latent, io['latent'])}"
        rec = tok.decode(enc.latent, enc.geometry)
        want = io["reconstruction"]
    assert rec.shape == io["input"].shape
    assert rel(rec, want) <= 1e-4, f"{name}: reconstruction max rel diff {rel(rec, want)}"
    assert rel(tok.reconstruct(io["input"], mode="windowed"), io["reconstruction"]) <= 1e-4


BUILD = os.environ.get("WFM_BINARY_DIR")


@needs_fixtures
@pytest.mark.skipif(not BUILD or not pathlib.Path(BUILD, "bin", "wfm").exists(), reason="needs the wfm tool")
@pytest.mark.parametrize("name", ["CV8x8x8", "DV8x16x16"])
def test_equals_the_cli(name, tmp_path):
    """Python encode/decode give the same tensors as `wfm tokenizer encode/decode` (the same C++ code)."""
    io = FIX / f"{name}.io.safetensors"
    cmd = [str(pathlib.Path(BUILD, "bin", "wfm")), "tokenizer", "encode", "--config", str(FIX / f"{name}.json"),
           "--weights", str(FIX / f"{name}.weights.safetensors"), "--input", str(io), "--output",
           str(tmp_path / "z.safetensors"), "--threads", "1", "--device", "cpu"]
    subprocess.run(cmd, check=True, capture_output=True)
    cli = core.read_safetensors(tmp_path / "z.safetensors")
    core.init_threads(1)
    enc = load(name).encode(core.read_safetensors(io)["input"])
    if enc.indices is not None:
        assert torch.equal(cli["indices"], enc.indices)
        assert torch.equal(cli["codes"], enc.latent)
    else:
        assert torch.equal(cli["latent"], enc.latent)
    # the geometry the CLI stored round-trips into decode
    geo = tk.ClipGeometry.from_metadata(core.SafetensorsFile(tmp_path / "z.safetensors").metadata)
    x = core.read_safetensors(io)["input"]
    assert (geo.frames, geo.height, geo.width) == (x.shape[2], x.shape[3], x.shape[4])
    assert (enc.geometry.frames, enc.geometry.height, enc.geometry.width) == (geo.frames, geo.height, geo.width)


@needs_fixtures
def test_streaming_modes_and_streams_agree():
    tok = load("CV4x8x8")
    x = core.read_safetensors(FIX / "CV4x8x8.io.safetensors")["input"]  # [1, 3, T, H, W]
    whole = tok.encode(x, chunk_frames=0)
    chunked = tok.encode(x, chunk_frames=4)
    assert rel(chunked.latent, whole.latent) <= 1e-5
    # odd sizes and frame counts: padded, then cropped back
    odd = x[:, :, :6, :30, :45]
    r = tok.reconstruct(odd, chunk_frames=4)
    assert r.shape == odd.shape
    # incremental encode stream == one-shot encode
    s = tok.start_encode(chunk_frames=4)
    parts = [s.push(x[:, :, i:i + 3]).latent for i in range(0, x.shape[2], 3)]
    parts.append(s.finish().latent)
    assert s.frames_in == x.shape[2]
    assert rel(torch.cat(parts, 2), whole.latent) <= 1e-5
    d = tok.start_decode(whole.geometry, chunk_frames=4)
    frames = torch.cat([d.push(whole.latent[:, :, i:i + 1]) for i in range(whole.latent.shape[2])], 2)
    assert rel(frames, tok.decode(whole.latent, whole.geometry)) <= 1e-5
    # tiling covers the frame with overlapping tiles
    tiled = tok.encode(x, tile=16, tile_overlap=8)
    assert tiled.latent.shape == whole.latent.shape


@needs_fixtures
def test_state_dict_is_zero_copy_and_training_works(tmp_path):
    tok = load("DV4x8x8")
    sd = tok.state_dict()
    assert set(sd) >= {"quantizer._levels", "encoder.conv_in.0.conv3d.weight"} or len(sd) > 10
    name = next(k for k, v in sd.items() if v.is_floating_point() and v.dim() == 5)
    assert tok.state_dict()[name].data_ptr() == sd[name].data_ptr()  # the network's own storage
    ref = core.read_safetensors(FIX / "DV4x8x8.weights.safetensors")
    assert set(ref) == set(sd) and all(torch.equal(ref[k], sd[k]) for k in ref)
    x = core.read_safetensors(FIX / "DV4x8x8.io.safetensors")["input"]
    before = tok.encode(x).latent
    with torch.no_grad():
        sd[name].mul_(0.5)  # in place: the tokenizer sees it
    assert not torch.equal(tok.encode(x).latent, before)
    tok.load_state_dict(ref)
    assert torch.equal(tok.encode(x).latent, before)
    # autograd flows through forward() into the parameters; an optimizer step changes the tokenizer
    tok.train()
    assert tok.training
    params = tok.parameters()
    opt = torch.optim.SGD(params, lr=1e-3)
    rec, codes, indices = tok.forward(x)
    assert rec.shape == x.shape and indices.dtype == torch.int64 and codes.requires_grad
    loss = (rec - x).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert len(grads) == len(params) and any(g.abs().sum() > 0 for g in grads)
    opt.step()
    tok.eval()
    assert not torch.equal(tok.encode(x).latent, before)
    # save -> from_files round trip; from_state_dict
    tok.save(tmp_path / "w.safetensors")
    again = tk.Tokenizer.from_files(FIX / "DV4x8x8.json", tmp_path / "w.safetensors")
    assert torch.equal(again.encode(x).indices, tok.encode(x).indices)
    again2 = tk.Tokenizer.from_state_dict(tok.config, tok.state_dict())
    assert torch.equal(again2.encode(x).indices, tok.encode(x).indices)


def test_config_presets_and_random():
    assert "Cosmos-Tokenize1-CV8x8x8-720p" in tk.preset_names() or len(tk.preset_names()) >= 8
    c = tk.config("DV8x16x16")
    assert c["name"] == "DV" and c["spatial_compression"] == 16 and c["levels"] == [8, 8, 8, 5, 5, 5]
    small = dict(tk.config("CV4x8x8"), channels=4, channels_mult=[1, 1, 1], num_res_blocks=1)
    a = tk.Tokenizer.random(small, seed=3)
    b = tk.Tokenizer.random(small, seed=3)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert (a.temporal_compression, a.spatial_compression, a.latent_channels) == (4, 8, 16)
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert a.reconstruct(x).shape == x.shape


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="NotAPreset"):
        tk.config("NotAPreset")
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        tk.Tokenizer.from_files("CV4x8x8", missing)
    small = dict(tk.config("CV4x8x8"), channels=4, channels_mult=[1, 1, 1], num_res_blocks=1)
    tok = tk.Tokenizer.random(small)
    core.write_safetensors(tmp_path / "bad.safetensors", {"encoder.nothing": torch.zeros(2)})
    with pytest.raises(ValueError, match="bad.safetensors") as e:
        tk.Tokenizer.from_files(small, tmp_path / "bad.safetensors")
    assert e.value.status_code == "INVALID_ARGUMENT"
    with pytest.raises(ValueError):
        tok.encode(torch.zeros(1, 4, 5, 16, 16))  # 4 channels
    with pytest.raises(ValueError):
        tok.encode(torch.full((1, 3, 5, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="mode"):
        tok.encode(torch.zeros(1, 3, 5, 16, 16), mode="sideways")
    with pytest.raises(ValueError, match="continuous"):
        tok.codes_to_indices(torch.zeros(1, 6, 2, 2, 2))


def test_reconstruction_loss():  # tk.train: python/tests/test_training.py
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    total, parts = tk.reconstruction_loss(x, x)
    assert float(total) < 1e-6 and set(parts) >= {"l1", "ssim_loss"}
    rec = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    total, parts = tk.reconstruction_loss(x, rec, ssim=0.0, temporal=0.0)
    assert abs(float(total) - float((x - rec).abs().mean())) < 1e-5
    total.backward()
    assert rec.grad is not None


def small_dv():
    return dict(tk.config("DV4x8x8"), channels=4, channels_mult=[1, 1, 1], num_res_blocks=1)


def test_encode_decode_progress_reports_chunks_and_equals_the_plain_call():
    tok = tk.Tokenizer.random(small_dv(), seed=1)
    x = torch.rand(1, 3, 21, 16, 16) * 2 - 1
    seen = []
    enc = tok.encode(x, chunk_frames=4, progress=lambda done, total, info: seen.append((done, total, info["finished"])))
    assert seen == [(5, 21, False), (9, 21, False), (13, 21, False), (17, 21, False), (21, 21, False), (21, 21, True)]
    plain = tok.encode(x, chunk_frames=4)
    assert torch.equal(enc.indices, plain.indices) and torch.equal(enc.latent, plain.latent)
    seen.clear()
    rec = tok.decode(enc.indices, enc.geometry, chunk_frames=4, progress=lambda d, t, i: seen.append((d, t)))
    assert seen == [(2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]  # latent frames: 1 + 1 first, then 1 per chunk
    assert torch.equal(rec, tok.decode(enc.indices, enc.geometry, chunk_frames=4))

    def boom(done, total, info):
        raise RuntimeError(f"cancel at {done}")

    with pytest.raises(RuntimeError, match="cancel at 5"):
        tok.encode(x, chunk_frames=4, progress=boom)
    seen.clear()  # windowed mode and images report once
    tok.encode(x, mode="windowed", temporal_window=9, progress=lambda d, t, i: seen.append((d, t, i["finished"])))
    assert seen == [(21, 21, True)]


def test_reconstruct_progress_reports_chunks_and_equals_the_plain_call():
    for config in (small_dv(), dict(tk.config("CV4x8x8"), channels=4, channels_mult=[1, 1, 1], num_res_blocks=1)):
        tok = tk.Tokenizer.random(config, seed=2)
        x = torch.rand(1, 3, 19, 16, 24) * 2 - 1  # 19 frames: the padded tail is cropped
        seen = []
        rec = tok.reconstruct(x, chunk_frames=4, progress=lambda d, t, i: seen.append((d, t, i["finished"])))
        plain = tok.reconstruct(x, chunk_frames=4)
        assert rec.shape == x.shape and torch.equal(rec, plain), (rec - plain).abs().max()
        # frames reconstructed after each encoded chunk (1 + 4, then 4 each), then the tail at Finish
        done = [d for d, _, _ in seen]
        assert done == sorted(done) and done[-1] == 19 and all(t == 19 for _, t, _ in seen), seen
        assert [f for _, _, f in seen] == [False] * (len(seen) - 1) + [True] and len(seen) >= 5
        assert seen[0][0] > 0  # the first chunk is reconstructed before the second is encoded

    def boom(done, total, info):
        raise RuntimeError(f"cancel at {done}")

    with pytest.raises(RuntimeError, match="cancel at"):
        tok.reconstruct(x, chunk_frames=4, progress=boom)
    seen.clear()  # windowed mode reports once
    tok.reconstruct(x, mode="windowed", temporal_window=9, progress=lambda d, t, i: seen.append((d, t, i["finished"])))
    assert seen == [(19, 19, True)]


def test_tokenizer_module_is_a_torch_module_over_the_native_tensors():
    tok = tk.Tokenizer.random(small_dv(), seed=0)
    m = tk.TokenizerModule(tok)
    assert isinstance(m, torch.nn.Module) and m.tokenizer is tok
    native, sd = tok.state_dict(), m.state_dict()
    assert set(sd) == set(native)
    assert all(sd[k].data_ptr() == native[k].data_ptr() for k in native)  # shared storage, reference names
    assert {p.data_ptr() for p in m.parameters()} == {p.data_ptr() for p in tok.parameters()}
    assert len(list(m.parameters())) == len(tok.parameters())
    assert all(isinstance(p, torch.nn.Parameter) for p in m.parameters())
    assert all(any(p is q for q in tok.parameters()) for p in m.parameters())  # the very same tensor objects
    assert {n for n, _ in m.named_buffers()} == set(native) - {n for n, _ in m.named_parameters()}
    assert not m.training and not tok.training
    m.train()
    assert m.training and tok.training and m.encoder.training
    m.eval()
    assert not tok.training
    # gradients of forward() reach the native parameters; an optimizer over m.parameters() changes the tokenizer
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    before = tok.encode(x).latent
    saved = {k: v.clone() for k, v in sd.items()}
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    opt.zero_grad()
    rec, codes, indices = m(x)
    assert rec.shape == x.shape and indices.dtype == torch.int64
    (rec - x).pow(2).mean().backward()
    grads = {p.data_ptr(): p.grad for p in tok.parameters()}
    assert all(grads[p.data_ptr()] is not None for p in m.parameters())
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    opt.step()
    m.eval()
    assert not torch.equal(tok.encode(x).latent, before)
    m.load_state_dict(saved)  # copies into the native tensors
    assert torch.equal(tok.encode(x).latent, before)
    # .to(dtype) moves the native tensors in place; encode/decode of the module follow
    name = next(k for k, v in native.items() if v.dim() == 5)
    m.to(torch.float64)
    assert tok.state_dict()[name].dtype == torch.float64 and m.tokenizer.dtype == torch.float64
    assert m.state_dict()[name].data_ptr() == tok.state_dict()[name].data_ptr()
    assert torch.allclose(m.encode(x).latent, before, atol=1e-4)
    m.float()
    assert m.tokenizer.dtype == torch.float32 and torch.equal(m.encode(x).latent, before)
