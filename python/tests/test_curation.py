"""wfm.curation through Python: shot detection on the real clip with one hard cut (= the `wfm shots` CLI), the
curate pipeline from a dict, webdataset shards read natively and through a torch DataLoader with workers,
tar writing, errors."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import torch

import wfm

if "curation" not in wfm.__all__:
    pytest.skip("this build has no curation bindings", allow_module_level=True)
import wfm.core as core
import wfm.curation as cur
import wfm.tokenizer as tk

ROOT = pathlib.Path(__file__).resolve().parents[2]
MEDIA = pathlib.Path(os.environ.get("WFM_SHARED_DIR", ROOT.parent / "shared")) / "media"
TOK = MEDIA.parent / "fixtures" / "tokenizer"
CITY = MEDIA / "cityCC0.mpg"  # 720x405, 25 fps, 190 frames, ONE hard cut at frame 116
needs_media = pytest.mark.skipif(not CITY.exists(), reason=f"missing shared clip {CITY}")
BUILD = os.environ.get("WFM_BINARY_DIR")


@needs_media
def test_detect_shots_finds_the_cut_and_equals_the_cli():
    r = cur.detect_shots(CITY, threads=1)
    assert r["num_frames"] == 190 and abs(r["fps"] - 25) < 1e-6
    assert r["shots"] == [[0, 116], [116, 190]]
    assert any(t["type"] == "cut" for t in r["transitions"])
    if BUILD and pathlib.Path(BUILD, "bin", "wfm").exists():
        out = subprocess.run([str(pathlib.Path(BUILD, "bin", "wfm")), "shots", str(CITY), "--transitions"],
                             check=True, capture_output=True, text=True).stdout
        assert json.loads(out) == r
    # the same on frames in memory
    frames = core.decode_video(CITY, width=128, height=72)
    m = cur.detect_shots_in_frames(frames, 25.0, method="classic")
    assert m["shots"] == [[0, 116], [116, 190]]


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    if not CITY.exists() or not (TOK / "CV4x8x8.json").exists():
        pytest.skip(f"missing shared clip {CITY} or tokenizer fixtures")
    d = tmp_path_factory.mktemp("curate")
    (d / "in").mkdir()
    shutil.copy(CITY, d / "in" / "city.mpg")
    (d / "in" / "city.txt").write_text("a city skyline at night\n")
    summary = cur.curate({"input": [str(d / "in")], "output": str(d / "out"), "workers": 1, "decode_threads": 1,
                          "clip_height": 90, "min_clip_s": 1.0, "min_clip_frames": 10, "trim_s": 0.2,
                          "quiet": True, "bitrate": "1M", "latents": True, "tokenizer": str(TOK / "CV4x8x8.json"),
                          "tokenizer_weights": str(TOK / "CV4x8x8.weights.safetensors")})
    return d, summary


def test_curate_from_a_dict(curated):
    d, summary = curated
    assert (d / "out" / "summary.json").exists() and (d / "out" / "clips.jsonl").exists()
    assert json.loads((d / "out" / "summary.json").read_text())["inputs"] == summary["inputs"]
    clips = [json.loads(line) for line in (d / "out" / "clips.jsonl").read_text().splitlines()]
    kept = [c for c in clips if c["kept"]]
    assert len(clips) == 2 and kept  # one clip per shot
    assert cur.discover_inputs([str(d / "in")]) == [str(d / "in" / "city.mpg")]


def test_shards_read_natively_and_through_a_dataloader(curated):
    d, _ = curated
    shards = cur.list_shards(d / "out" / "shards")
    assert shards and all(s.endswith(".tar") for s in shards)
    samples = list(cur.ShardReader(d / "out" / "shards"))
    clips = {json.loads(line)["span_uuid"]: json.loads(line)
             for line in (d / "out" / "clips.jsonl").read_text().splitlines()}
    assert samples and all(set(s.extensions) >= {"mp4", "json"} for s in samples)
    for s in samples:
        meta = s.json()
        assert meta["span_uuid"] in clips and clips[meta["span_uuid"]]["kept"]
        assert "city skyline" in s.text()
        video = s.decode_video()
        assert video.dtype == torch.uint8 and video.shape[1:] == (90, 160, 3)
        assert abs(video.shape[0] - meta["num_frames"]) <= 1
    # KEY.latent.safetensors (curate latents=True) = the tokenizer's encoding of the clip's decoded frames
    tok = tk.Tokenizer.from_files(TOK / "CV4x8x8.json", TOK / "CV4x8x8.weights.safetensors")
    key, video, meta = next(iter(cur.ShardDataset(d / "out" / "shards")))
    want = tok.encode(core.frames_to_model_input(video)[None]).latent[0]
    got = meta["latents"]["latent"]
    assert got.shape == want.shape
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-4
    # DataLoader with two workers: every sample exactly once (shards split by worker)
    ds = cur.ShardDataset([d / "out" / "shards"], width=64, height=32)
    for workers in (0, 2):
        got = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers))
        assert sorted(k for k, _, _ in got) == sorted(s.key for s in samples)
        assert all(v.shape[1:] == (32, 64, 3) and m["caption"].startswith("a city") for _, v, m in got)


def test_tar_writer_and_reader_round_trip(tmp_path):
    frames = torch.randint(0, 255, (6, 32, 48, 3), dtype=torch.uint8)
    core.write_video(tmp_path / "c.mp4", frames, fps=12, crf=10)
    (tmp_path / "shards").mkdir()
    for i in range(3):
        with cur.TarWriter(tmp_path / "shards" / f"{i:06d}.tar") as w:
            for j in range(2):
                key = f"s{i}{j}"
                w.add(f"{key}.json", json.dumps({"i": i, "j": j}))
                w.add(f"{key}.txt", b"caption")
                w.add_file(f"{key}.mp4", tmp_path / "c.mp4")
    assert [n for n, _ in cur.list_tar(tmp_path / "shards" / "000000.tar")][:3] == ["s00.json", "s00.txt", "s00.mp4"]
    r0 = [s.key for s in cur.ShardReader(tmp_path / "shards", rank=0, world_size=2)]
    r1 = [s.key for s in cur.ShardReader(tmp_path / "shards", rank=1, world_size=2)]
    assert sorted(r0 + r1) == ["s00", "s01", "s10", "s11", "s20", "s21"] and not set(r0) & set(r1)
    only = next(iter(cur.ShardReader(tmp_path / "shards", extensions=["json"])))
    assert only.extensions == ["json"] and only.json() == {"i": 0, "j": 0}
    with pytest.raises(KeyError):
        only.get("mp4")
    batches = list(torch.utils.data.DataLoader(cur.ShardDataset(tmp_path / "shards", epochs=2), batch_size=4,
                                               collate_fn=lambda b: b))
    assert sum(len(b) for b in batches) == 12  # two epochs


def test_run_takes_a_dict_a_json_string_or_a_json_file_and_reports_progress(tmp_path):
    (tmp_path / "in").mkdir()
    g = torch.Generator().manual_seed(1)
    for v in range(3):  # three tiny noisy clips
        core.write_video(tmp_path / "in" / f"v{v}.mp4",
                         torch.randint(0, 255, (12, 32, 48, 3), generator=g, dtype=torch.uint8), fps=12.0)
    config = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out"), "workers": 1, "decode_threads": 1,
              "transcode": False, "quiet": True}
    (tmp_path / "curate.json").write_text(json.dumps(config))

    def stop_after_one(done, total, info):
        assert (total, info["unit"]) == (3, "videos")
        if done == 1:
            raise KeyboardInterrupt("enough")

    # from a JSON file (pathlib.Path): the callback's exception stops the run after the first video
    with pytest.raises(KeyboardInterrupt, match="enough"):
        cur.run(tmp_path / "curate.json", progress=stop_after_one)
    assert not (tmp_path / "out" / "summary.json").exists()
    # from a JSON string: resumes with the two videos left, counting them in order
    seen = []
    summary = cur.run(json.dumps(config), progress=lambda done, total, info: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2), (2, 2)]  # each video, then the final report
    clips = [json.loads(line) for line in (tmp_path / "out" / "videos.jsonl").read_text().splitlines()]
    assert sorted(pathlib.Path(c["source_video"]).name for c in clips) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert summary["videos"] == {"failed": 0, "ok": 3, "processed_this_run": 2, "resumed": 1}
    again = cur.run(str(tmp_path / "curate.json"))  # a str path; nothing left to do
    assert again["videos"]["resumed"] == 3 and again["videos"]["processed_this_run"] == 0
    with pytest.raises(ValueError, match="dict, a JSON object string or a JSON file path"):
        cur.run(42)
    with pytest.raises(ValueError, match="not valid JSON"):
        cur.run('{"input": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        cur.run(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError, match="neither a JSON object nor an existing file"):
        cur.run(str(tmp_path / "missing.json"))


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown curate option.*colour"):
        cur.curate({"input": "x", "output": str(tmp_path / "o"), "colour": 1})
    with pytest.raises(ValueError, match="output"):
        cur.curate({"input": "x"})
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        cur.detect_shots(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"x" * 700)
    with pytest.raises((ValueError, OSError), match="bad.tar"):
        list(cur.ShardReader(bad))
    with pytest.raises(ValueError, match="rank"):
        cur.ShardReader(tmp_path, rank=2, world_size=2)


GIL_SCRIPT = r'''
import errno, os, sys, threading, time
import torch
import wfm.core as core, wfm.curation as cur
core.write_video("c.mkv", torch.randint(0, 255, (10, 32, 48, 3), dtype=torch.uint8), fps=10)
data = open("c.mkv", "rb").read()
os.mkfifo("pipe.mkv")
out = {}
def work():
    try:
        out["shots"] = cur.detect_shots("pipe.mkv", threads=1)
    except Exception as e:  # noqa: BLE001
        out["error"] = repr(e)
t = threading.Thread(target=work)
t.start()
# The C++ side blocks opening the pipe until a writer comes: this loop (Python, main thread) can only run
# while the detect_shots call has released the GIL.
while t.is_alive():
    try:
        fd = os.open("pipe.mkv", os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno != errno.ENXIO:
            raise
        time.sleep(0.01)  # no reader yet
        continue
    os.set_blocking(fd, True)
    try:
        os.write(fd, data)
    except BrokenPipeError:
        pass
    os.close(fd)
t.join()
print("OK" if "shots" in out and out["shots"]["num_frames"] >= 10 else out)
'''


def test_the_gil_is_released_during_native_calls(tmp_path):
    """detect_shots on a named pipe: the Python thread that feeds the pipe must run while the call waits for it
    (a call holding the GIL would deadlock; the subprocess timeout turns that into a failure)."""
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", GIL_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr
