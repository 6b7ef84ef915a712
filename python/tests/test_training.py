"""Training entry points from Python (wfm.ar.train, wfm.tokenizer.train, wfm.diffusion.train): a few steps on tiny
data built here write a checkpoint and a metrics JSONL with finite losses; a second call resumes from the
checkpoint; progress callbacks see every step in order; a callback that raises stops the run with that exception
(after a checkpoint) and the run resumes from there; options are checked like the CLI's; shards= trains from curated
webdataset shards built here (clips and captions extracted once) and a corrupt shard is an error naming it."""
import json
import math
import pathlib

import pytest
import torch

import wfm

if "ar" not in wfm.__all__ or "tokenizer" not in wfm.__all__:
    pytest.skip("this build has no training bindings", allow_module_level=True)
import wfm.ar as ar
import wfm.core as core
import wfm.tokenizer as tk


def records(run, split="train"):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def checkpoints(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step_"))


class Stop(Exception):
    pass


AR_TINY = dict(config="tiny", synthetic=True, latent_shape=[2, 4, 4], batch_size=2, eval_every=100, val_samples=1,
               log_every=1, device="cpu", seed=3)


def test_ar_train_writes_checkpoints_and_metrics_and_resumes(tmp_path):
    run = tmp_path / "ar"
    calls = []
    r = ar.train(**AR_TINY, output=run, steps=2, progress=lambda done, total, info: calls.append((done, total, info)))
    assert (r["start_step"], r["steps"]) == (0, 2) and not r["interrupted"]
    assert [c[:2] for c in calls] == [(1, 2), (2, 2), (2, 2)]  # every step, then the final report
    assert calls[-1][2]["finished"] and not calls[0][2]["finished"] and calls[0][2]["unit"] == "steps"
    assert "loss" in calls[0][2]["status"]
    train = records(run)
    assert [t["step"] for t in train] == [1, 2] and all(math.isfinite(t["loss"]) for t in train)
    assert checkpoints(run) == ["step_00000002"]
    assert (run / "model_ema.safetensors").exists() and r["config_path"] == str(run / "config.json")
    model = ar.ArModel(r["config_path"], r["ema_weights_path"])  # the result loads
    assert model.latent_shape == [2, 4, 4]
    # a second call with more steps resumes at the checkpoint
    r2 = ar.train(**AR_TINY, output=run, steps=3)
    assert (r2["start_step"], r2["steps"]) == (2, 3)
    assert [t["step"] for t in records(run)] == [1, 2, 3]


def test_ar_train_callback_exception_stops_cleanly_and_resume_continues(tmp_path):
    run = tmp_path / "ar"

    def stop_after_two(done, total, info):
        if done == 2:
            raise Stop(f"stop at {done}/{total}")

    with pytest.raises(Stop, match="stop at 2/4"):
        ar.train(**AR_TINY, output=run, steps=4, progress=stop_after_two)
    assert checkpoints(run) == ["step_00000002"]  # written as on Ctrl-C
    r = ar.train(**AR_TINY, output=run, steps=4)
    assert (r["start_step"], r["steps"]) == (2, 4)
    fresh = ar.train(**AR_TINY, output=run, steps=1, no_resume=True)
    assert fresh["start_step"] == 0


def test_ar_train_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown wfm.ar.train option.*colour"):
        ar.train(**AR_TINY, output=tmp_path, steps=1, colour=1)
    with pytest.raises(ValueError, match="option 'steps' has the wrong type"):
        ar.train(**AR_TINY, output=tmp_path, steps="many")
    with pytest.raises(ValueError, match="exactly one data source"):
        ar.train(config="tiny", output=tmp_path, steps=1)
    with pytest.raises(ValueError, match="output"):
        ar.train(config="tiny", synthetic=True)
    with pytest.raises(ValueError, match="max_time"):
        ar.train(**AR_TINY, output=tmp_path, steps=1, max_time="soon")
    with pytest.raises(FileNotFoundError, match="nope"):
        ar.train(**dict(AR_TINY, synthetic=False), tokens=tmp_path / "nope", output=tmp_path / "o", steps=1)
    with pytest.raises(TypeError):
        ar.train(**AR_TINY, output=tmp_path, steps=1, progress=3)  # not callable


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two tiny videos of a square moving over noise (16 frames, 48x40)."""
    d = tmp_path_factory.mktemp("videos")
    g = torch.Generator().manual_seed(0)
    for v in range(2):
        frames = torch.randint(0, 60, (16, 40, 48, 3), generator=g, dtype=torch.uint8)
        for t in range(16):
            frames[t, 8:24, 2 * t + v:2 * t + v + 16] = 220
        core.write_video(d / f"clip{v}.mp4", frames, fps=8.0)
    return d


TOK_TINY = dict(config="CV4x8x8", channels=4, channels_mult="1,1,1", num_res_blocks=1, frames=5, size=16,
                short_side=20, batch_size=1, val_clips=1, val_fraction=0.4, eval_every=100, sample_every=100,
                warmup=1, log_every=1, device="cpu")


def test_tokenizer_train_writes_checkpoints_and_metrics_and_resumes(tmp_path, videos):
    run = tmp_path / "tok"
    steps = []
    r = tk.train(**TOK_TINY, input=videos, output=run, steps=2, checkpoint_every=1,
                 progress=lambda done, total, info: steps.append(done))
    assert r["steps"] == 2 and math.isfinite(r["val_psnr"]) and steps == [1, 2, 2]
    train = records(run)
    assert [t["step"] for t in train] == [1, 2] and all(math.isfinite(t["loss"]) for t in train)
    assert checkpoints(run) == ["step_00000001", "step_00000002"]
    trained = tk.Tokenizer.from_files(r["config_path"], r["weights_path"])
    assert trained.config["channels"] == 4
    r2 = tk.train(**TOK_TINY, input=[str(p) for p in sorted(videos.iterdir())], output=run, steps=3)
    assert r2["steps"] == 3 and [t["step"] for t in records(run)] == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown wfm.tokenizer.train option.*num_frames"):
        tk.train(**TOK_TINY, input=videos, output=run, num_frames=5)
    with pytest.raises(ValueError, match="input"):
        tk.train(config="CV4x8x8", output=run)


DIF_TINY = dict(config="tiny", synthetic=True, synthetic_frames=2, synthetic_size=4, batch_size=1, eval_every=100,
                sample_steps=1, log_every=1, device="cpu")


@pytest.mark.skipif("diffusion" not in wfm.__all__, reason="no diffusion bindings")
def test_diffusion_train_writes_checkpoints_and_metrics_resumes_and_stops_on_request(tmp_path):
    import wfm.diffusion as dif

    run = tmp_path / "dit"
    calls = []

    def stop_at_two(done, total, info):
        calls.append((done, total))
        if done == 2:
            raise Stop("two is enough")

    with pytest.raises(Stop, match="two is enough"):
        dif.train(**DIF_TINY, output=run, steps=3, progress=stop_at_two)
    assert calls == [(1, 3), (2, 3)] and checkpoints(run) == ["step_00000002"]
    train = records(run)
    assert [t["step"] for t in train] == [1, 2] and all(math.isfinite(t["loss"]) for t in train)
    r = dif.train(**DIF_TINY, output=run, steps=3)  # resumes
    assert (r["start_step"], r["steps"]) == (2, 3) and math.isfinite(r["last_train"]["loss"])
    assert [t["step"] for t in records(run)] == [1, 2, 3] and math.isfinite(records(run, "val")[-1]["eval_loss"])
    model = dif.DiffusionModel(r["config_path"], r["weights_path"])
    assert model.config["model_channels"] > 0
    # a config dict; option errors like the CLI's
    cfg = dif.config("tiny")
    r = dif.train(**dict(DIF_TINY, config=cfg), output=tmp_path / "dict", steps=1)
    assert r["steps"] == 1
    with pytest.raises(ValueError, match="unknown wfm.diffusion.train option.*frames"):
        dif.train(**DIF_TINY, output=run, frames=3)
    with pytest.raises(ValueError, match="exactly one of"):
        dif.train(config="tiny", output=run, steps=1)
    # the shared schedule/run options (tools/train_flags.h names): keep_checkpoints, no_resume, lr_schedule
    r = dif.train(**DIF_TINY, output=run, steps=3, checkpoint_every=1, keep_checkpoints=1, lr_schedule="constant",
                  warmup=0, no_resume=True)
    assert r["start_step"] == 0 and checkpoints(run) == ["step_00000003"]
    assert [t["lr"] for t in records(run)][-3:] == [pytest.approx(1e-4)] * 3  # constant, no warmup (default lr)
    with pytest.raises(ValueError, match="schedule"):
        dif.train(**DIF_TINY, output=tmp_path / "bad", steps=1, lr_schedule="sideways")


# ---- shards= : curated webdataset shards as training data (curation::ExtractShardClips, as the CLIs) ----
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards as `wfm curate` writes them, one sample each: KEY.mp4 (40 frames, 64x64, a square moving right
    over noise), KEY.txt caption, KEY.json."""
    import wfm.curation as cur

    d = tmp_path_factory.mktemp("shards")
    g = torch.Generator().manual_seed(1)
    for i in range(2):
        frames = torch.randint(0, 50, (40, 64, 64, 3), generator=g, dtype=torch.uint8)
        for t in range(40):
            frames[t, 24:40, t + i:t + i + 16] = 220
        core.write_video(d / f"clip{i}.mp4", frames, fps=10.0)
        with cur.TarWriter(d / "shards" / f"{i:06d}.tar") as w:
            key = f"video{i}_0"
            w.add(f"{key}.json", json.dumps({"clip": i}))
            w.add(f"{key}.txt", f"a white square slides right {i}")
            w.add_file(f"{key}.mp4", d / f"clip{i}.mp4")
    return d / "shards"


def test_tokenizer_train_from_shards_extracts_once_and_resumes(tmp_path, shards):
    run = tmp_path / "tok"
    r = tk.train(**TOK_TINY, shards=shards, output=run, steps=2)
    assert r["steps"] == 2 and math.isfinite(r["val_psnr"]) and r["val_psnr"] > 0
    train = records(run)
    assert [t["step"] for t in train] == [1, 2] and all(math.isfinite(t["loss"]) for t in train)
    clips = run / "shard_videos"
    assert sorted(p.name for p in clips.iterdir()) == ["000000_video0_0.mp4", "000000_video0_0.txt",
                                                       "000001_video1_0.mp4", "000001_video1_0.txt"]
    assert (clips / "000001_video1_0.txt").read_text() == "a white square slides right 1"
    assert (clips / "000000_video0_0.mp4").read_bytes() == (shards.parent / "clip0.mp4").read_bytes()
    stamp = (clips / "000000_video0_0.mp4").stat().st_mtime_ns
    # resumed with one shard named as a file and the other in input=, as the CLI's --input takes them
    r2 = tk.train(**TOK_TINY, shards=shards / "000000.tar", input=shards / "000001.tar", output=run, steps=3)
    assert r2["steps"] == 3 and [t["step"] for t in records(run)] == [1, 2, 3]
    assert (clips / "000000_video0_0.mp4").stat().st_mtime_ns == stamp  # extracted once


def test_ar_train_from_shards_tokenizes_the_clips_on_the_fly(tmp_path, shards):
    tokenizer_config = pathlib.Path(__file__).resolve().parents[2] / "tests/autoregressive/data/dv_tiny_tokenizer.json"
    run = tmp_path / "ar"
    # the tiny model (latent 3x4x4) + the tiny random DV tokenizer (8x16x16): clips of 17 frames at 64x64
    r = ar.train(config="tiny", shards=[shards], tokenizer_config=tokenizer_config, random_tokenizer=True, steps=2,
                 batch_size=2, val_samples=2, val_fraction=0.5, eval_every=100, log_every=1, device="cpu",
                 output=run)
    assert (r["start_step"], r["steps"]) == (0, 2)
    assert math.isfinite(r["first_loss"]) and math.isfinite(r["val_ce"]) and 0 <= r["val_accuracy"] <= 1
    assert [t["step"] for t in records(run)] == [1, 2]
    assert (run / "shard_videos" / "000000_video0_0.txt").read_text() == "a white square slides right 0"


def test_train_from_bad_shards_names_the_file(tmp_path, shards):
    bad = tmp_path / "bad" / "000009.tar"
    bad.parent.mkdir()
    bad.write_bytes(b"z" * 1024)  # no tar header
    with pytest.raises(OSError, match="000009.tar") as e:
        tk.train(**TOK_TINY, shards=[shards, bad], output=tmp_path / "tok", steps=1)
    assert e.value.status_code == "DATA_LOSS"
    with pytest.raises(FileNotFoundError, match="missing"):
        ar.train(config="tiny", shards=tmp_path / "missing", random_tokenizer=True, output=tmp_path / "ar", steps=1)
    with pytest.raises(ValueError, match="not a webdataset shard"):
        tk.train(**TOK_TINY, shards=shards.parent / "clip0.mp4", output=tmp_path / "tok2", steps=1)
    with pytest.raises(ValueError, match="exactly one data source"):
        ar.train(config="tiny", shards=shards, synthetic=True, output=tmp_path / "ar", steps=1)
