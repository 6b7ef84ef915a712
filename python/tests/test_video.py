"""wfm.core video IO through Python on the real clips in ../shared/media: probe, the three decode paths agree,
encode round trips, PNG, errors."""
import os
import pathlib

import pytest
import torch

import wfm.core as core

if not hasattr(core, "probe_video"):
    pytest.skip("this build has no video IO", allow_module_level=True)

ROOT = pathlib.Path(__file__).resolve().parents[2]
MEDIA = pathlib.Path(os.environ.get("WFM_SHARED_DIR", ROOT.parent / "shared")) / "media"
TREE = MEDIA / "tree.avi"  # 320x240, cinepak, ~15 fps; the container says 444 frames, 68 decode (= ffprobe -count_frames)

needs_media = pytest.mark.skipif(not TREE.exists(), reason=f"missing shared clip {TREE}")


@needs_media
def test_probe():
    info = core.probe_video(TREE, exact=True)
    assert (info.codec, info.width, info.height) == ("cinepak", 320, 240)
    assert abs(info.fps - 15) < 1e-3 and info.fps_rational[0] / info.fps_rational[1] == info.fps
    assert info.num_frames_exact and abs(info.duration_s - 29.6) < 0.1
    assert core.decode_video(TREE, width=32, height=24).shape[0] == info.num_frames
    quick = core.probe_video(TREE)
    assert not quick.num_frames_exact and quick.num_frames == 444  # the container's count
    d = info.to_dict()
    assert d["codec"] == "cinepak" and d["width"] == 320 and d["num_frames"] == info.num_frames


@needs_media
def test_decode_paths_agree():
    opts = dict(width=64, height=48, start_frame=10, num_frames=20)
    whole = core.decode_video(TREE, **opts)
    assert whole.dtype == torch.uint8 and whole.shape == (20, 48, 64, 3)
    chunks = list(core.VideoReader(TREE, chunk_frames=7, **opts))
    assert [c.shape[0] for c in chunks] == [7, 7, 6]
    assert torch.equal(torch.cat(chunks), whole)
    streamed, firsts = [], []
    n = core.decode_video_stream(TREE, lambda c, first: (streamed.append(c.clone()), firsts.append(first)) and None,
                                 chunk_frames=8, **opts)
    assert n == 20 and torch.equal(torch.cat(streamed), whole)
    # returning False stops early; an exception stops and propagates
    got = []
    assert core.decode_video_stream(TREE, lambda c, first: got.append(c.shape[0]) or False, chunk_frames=5, **opts) == 5
    assert got == [5]

    def boom(c, first):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        core.decode_video_stream(TREE, boom, **opts)
    x = core.frames_to_model_input(whole)
    assert x.shape == (3, 20, 48, 64) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(core.model_output_to_frames(x), whole)


@needs_media
def test_encode_round_trip(tmp_path):
    frames = core.decode_video(TREE, num_frames=12)
    core.write_video(tmp_path / "a.mp4", frames, fps=15, crf=12)
    info = core.probe_video(tmp_path / "a.mp4", exact=True)
    assert (info.num_frames, info.width, info.height) == (12, 320, 240)
    again = core.decode_video(tmp_path / "a.mp4")
    assert (again.float() - frames.float()).abs().mean() < 4  # lossy, near-transparent at crf 12
    with core.VideoWriter(tmp_path / "b.mkv", 320, 240, fps_rational=(30000, 1001)) as w:
        for chunk in core.VideoReader(TREE, num_frames=10, chunk_frames=4):
            w.write(chunk)
    assert w.frames_written == 10
    assert core.probe_video(tmp_path / "b.mkv", exact=True).num_frames == 10
    with pytest.raises(ZeroDivisionError):
        with core.VideoWriter(tmp_path / "c.mp4", 320, 240) as w:
            w.write(frames[:2])
            1 / 0
    assert not (tmp_path / "c.mp4").exists()  # discarded, not half-written
    core.write_png(tmp_path / "f.png", frames[3])
    assert torch.equal(core.read_image(tmp_path / "f.png"), frames[3])
    core.write_png_frames(tmp_path / "pngs", frames[:3])
    assert len(list((tmp_path / "pngs").glob("frame_*.png"))) == 3


def test_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        core.probe_video(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises((ValueError, OSError, RuntimeError)) as e:
        core.decode_video(junk)
    assert "junk.mp4" in str(e.value)
    with pytest.raises(ValueError):
        core.decode_video(junk, chunk_frames=0)
    with pytest.raises(TypeError):
        core.decode_video_stream(junk, None)
