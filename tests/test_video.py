"""Videos through `nas-sr upscale`: frames, time, rotation and audio survive; failures leave
nothing behind."""

import itertools
import re
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import make_cfg, write_clip
from nas_sr.data import video
from nas_sr.data.video import Encoding, VideoError, probe, rewrite
from nas_sr.jobs import upscale

CELL_X2 = Path(__file__).resolve().parents[1] / "nas_sr" / "models" / "cell_x2" / "model.pt2"


def nearest_x2(frames: np.ndarray) -> np.ndarray:
    return frames.repeat(2, axis=1).repeat(2, axis=2)


def understated_clip(path: Path, frames: int = 50) -> Path:
    """A Matroska clip of ``frames`` frames at 12 fps whose DURATION tag says 0.1 s: a
    header that counts 1 frame."""
    clip = write_clip(path.with_name("honest.mkv"), frames=frames, audio=None)
    data, n = re.subn(rb"\d\d:\d\d:\d\d\.\d{9}", b"00:00:00.100000000", clip.read_bytes())
    assert n == 1  # the tag's value, same length, so nothing else moves
    path.write_bytes(data)
    return path


def resizing_clip(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """A Matroska MJPEG clip whose frames have the given (width, height)s, each a JPEG of
    its own size (as a hostile upload can mux them)."""
    tick = Fraction(1, 12)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=12)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuvj420p"
        for i, (w, h) in enumerate(sizes):
            jpeg = av.CodecContext.create("mjpeg", "w")
            jpeg.width, jpeg.height, jpeg.pix_fmt, jpeg.time_base = w, h, "yuvj420p", tick
            rgb = np.full((h, w, 3), 40 + 40 * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
            frame.pts = i
            for packet in jpeg.encode(frame) + jpeg.encode(None):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, tick
                out.mux(packet)
    return path


def audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])


def frame_means(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.to_ndarray(format="rgb24").mean()) for f in c.decode(video=0)]


def test_upscale_job_round_trips_a_clip_with_the_shipped_model(tmp_path):
    clip = write_clip(tmp_path / "in" / "clip.mov", frames=10, fps=15, rotation=90)
    upscale.run(make_cfg("upscale", f"model={CELL_X2}", f"input={clip}",
                         f"output={tmp_path / 'out'}", "video.batch=3", "video.preset=ultrafast"),
                tmp_path)
    out = tmp_path / "out" / "clip.mp4"
    src, res = probe(clip), probe(out)
    assert (res.width, res.height) == (2 * src.width, 2 * src.height) == (128, 96)
    assert (res.frames, res.fps, res.rotation) == (10, 15, 90)  # 10 = 3 + 3 + 3 + 1
    assert res.duration == pytest.approx(src.duration, abs=0.02)
    assert res.audio == "aac"
    assert np.array_equal(audio_samples(out), audio_samples(clip))  # copied, not re-encoded
    # the model sharpens, it does not relight: each frame keeps its own brightness
    assert np.allclose(frame_means(out), frame_means(clip), atol=2)


@pytest.mark.parametrize(("name", "audio", "dest", "encoding", "audio_out"), [
    ("pcm.mkv", "pcm_s16le", "x.mp4", Encoding(preset="ultrafast", batch=4), "pcm_s16le"),
    ("pcm.avi", "pcm_s16le", "x.webm", Encoding("libvpx-vp9", crf=40, batch=4), "opus"),
    ("silent.mp4", None, "x.avi",
     Encoding("mpeg4", crf=None, batch=4, options={"qscale": "4"}), None),
])
def test_containers_codecs_and_audio_that_cannot_be_copied(tmp_path, name, audio, dest,
                                                           encoding, audio_out):
    clip = write_clip(tmp_path / name, frames=8, audio=audio)
    seen = []
    rewrite(clip, tmp_path / dest, nearest_x2, 2, encoding,
            progress=lambda done, total: seen.append((done, total)))
    res = probe(tmp_path / dest)
    assert (res.width, res.height, res.frames, res.fps, res.audio) == (128, 96, 8, 12, audio_out)
    assert seen == [(4, 8), (8, 8), (8, 8)]  # the last: the exact count, once decoded
    assert np.allclose(frame_means(tmp_path / dest), frame_means(clip), atol=3)


def test_cd_rate_audio_is_resampled_for_an_encoder_that_lacks_it(tmp_path):
    # Opus takes 8-48 kHz only: a 44.1 kHz track must reach the WebM, still a 440 Hz tone
    clip = write_clip(tmp_path / "cd.mkv", frames=24, audio="pcm_s16le", audio_rate=44100)
    rewrite(clip, tmp_path / "x.webm", nearest_x2, 2, Encoding("libvpx-vp9", crf=40, batch=8))
    with av.open(str(tmp_path / "x.webm")) as c:
        assert (c.streams.audio[0].codec_context.name, c.streams.audio[0].rate) == ("opus", 48000)
    samples = audio_samples(tmp_path / "x.webm")
    assert len(samples) == pytest.approx(48000 * 24 / 12, rel=0.05)  # the clip's 2 s kept
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 48000 / len(samples) == pytest.approx(440, abs=2)


def test_an_odd_side_at_x3_loses_one_pixel_for_4_2_0(tmp_path):
    clip = write_clip(tmp_path / "c.mkv", frames=2, size=(47, 63), audio=None, codec="ffv1",
                      pix_fmt="yuv444p")

    def nearest_x3(frames):
        return frames.repeat(3, axis=1).repeat(3, axis=2)

    rewrite(clip, tmp_path / "o.mp4", nearest_x3, 3, Encoding(preset="ultrafast"))
    info = probe(tmp_path / "o.mp4")
    assert (info.width, info.height, info.frames) == (188, 140, 2)  # 189 x 141 made even


@pytest.mark.parametrize("workers", [1, 3])
def test_an_interrupted_job_leaves_no_file(tmp_path, workers):
    clip = write_clip(tmp_path / "c.mp4", frames=12)
    calls = []

    def dies(frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return nearest_x2(frames)

    with pytest.raises(KeyboardInterrupt):
        rewrite(clip, tmp_path / "out" / "c.mp4", dies, 2, Encoding(batch=4, workers=workers))
    assert list((tmp_path / "out").iterdir()) == []  # neither c.mp4 nor a partial file


def test_a_video_cut_short_between_frames_is_refused_not_written_short(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", frames=30, audio=None)
    # the index (moov) first, as a phone or a web encoder writes it, then cut the frame data
    # at a frame's start: the file still opens and demuxes cleanly, 15 frames short
    whole = tmp_path / "whole.mp4"
    with av.open(str(clip)) as src, av.open(str(whole), "w",
                                            options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    with av.open(str(whole)) as c:
        starts = sorted(p.pos for p in c.demux(video=0) if p.pos is not None and p.pos >= 0)
    cut = tmp_path / "in" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: starts[15]])
    assert (probe(cut).frames, probe(cut).counted) == (30, True)
    with pytest.raises(VideoError, match="cut.mp4: 15 of the 30 frames its header lists could "
                                         "be read; the file is truncated"):
        rewrite(cut, tmp_path / "out" / "cut.mp4", nearest_x2, 2, Encoding(batch=4))
    assert list((tmp_path / "out").iterdir()) == []
    assert probe(whole).counted and rewrite(whole, tmp_path / "ok.mp4", nearest_x2, 2).frames == 30


@pytest.mark.parametrize("kept", [0.7, 0.95])  # ~11 and ~30 of the 36 frames left
def test_a_truncated_mkv_without_a_frame_count_is_refused_by_its_duration(tmp_path, kept):
    clip = write_clip(tmp_path / "c.mkv", frames=36, audio=None)  # 3 s; Matroska counts none
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: int(clip.stat().st_size * kept)])
    info = probe(cut)
    assert (info.counted, info.timed, info.constant, info.frames) == (False, True, True, 36)
    with pytest.raises(VideoError, match=r"cut.mkv: \d+ of the 36 frames its 3.0 s at 12 fps "
                                         r"make could be read; the file is truncated"):
        rewrite(cut, tmp_path / "out" / "cut.mp4", nearest_x2, 2, Encoding(batch=4))
    assert list((tmp_path / "out").iterdir()) == []
    rewrite(clip, tmp_path / "out" / "whole.mp4", nearest_x2, 2, Encoding(batch=4))  # whole: kept
    assert probe(tmp_path / "out" / "whole.mp4").frames == 36


def test_what_is_not_a_usable_video_is_named(tmp_path):
    for name, reason in (("notes.mp4", "cannot be read as a video"),
                         ("notes.txt", "not a video container")):  # FFmpeg reads it as art
        (tmp_path / name).write_text("just some text\n" * 50)
        with pytest.raises(VideoError, match=f"{name}: {reason}"):
            probe(tmp_path / name)
    with pytest.raises(VideoError, match="holds only audio"):
        probe(write_clip(tmp_path / "song.m4a", video=False))
    good = write_clip(tmp_path / "good.mp4", frames=4).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: len(good) // 3])
    with pytest.raises(VideoError, match="cut.mp4: "):
        probe(tmp_path / "cut.mp4")
    with pytest.raises(VideoError, match="unknown video container"):
        rewrite(tmp_path / "good.mp4", tmp_path / "o.flv", nearest_x2, 2)
    for codec, dest in (("no_such_codec", "o.mp4"), ("libx264", "o.webm")):
        with pytest.raises(VideoError, match=f"codec '{codec}': .*; use e.g. libx264"):
            rewrite(tmp_path / "good.mp4", tmp_path / dest, nearest_x2, 2, Encoding(codec))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cut.mp4", "good.mp4", "notes.mp4", "notes.txt", "song.m4a"]  # no partial output


def counting_x2(seen: list[int]):
    def fn(frames: np.ndarray) -> np.ndarray:
        seen.append(len(frames))
        return nearest_x2(frames)
    return fn


@pytest.mark.parametrize("overlap", [False, True])
def test_a_clip_longer_than_its_header_says_stops_at_the_frame_limit(tmp_path, overlap):
    liar = understated_clip(tmp_path / "liar.mkv")
    assert probe(liar).frames == 1  # what the upload's check sees
    seen: list[int] = []
    with pytest.raises(VideoError, match=r"liar.mkv: holds more than 5 frames \(its header "
                                         r"suggests 1\), more than this server takes"):
        rewrite(liar, tmp_path / "out" / "o.mp4", counting_x2(seen), 2,
                Encoding(preset="ultrafast", max_frames=5, overlap=overlap))
    # the sixth frame was decoded, counted, and went no further; one after another, the
    # five before it all reached the model, while overlapped the stop may overtake some
    assert sum(seen) == 5 if not overlap else sum(seen) <= 5
    assert list((tmp_path / "out").iterdir()) == []
    assert rewrite(liar, tmp_path / "whole.mp4", nearest_x2, 2,
                   Encoding(preset="ultrafast", max_frames=50)).frames == 50


@pytest.mark.parametrize("overlap", [False, True])
def test_every_frame_is_checked_against_the_pixel_limit_and_the_first_frames_size(tmp_path,
                                                                                   overlap):
    grows = resizing_clip(tmp_path / "grows.mkv", [(64, 48)] * 3 + [(640, 480)])
    assert (probe(grows).width, probe(grows).height) == (64, 48)  # the upload's check
    seen: list[int] = []
    with pytest.raises(VideoError, match=r"grows.mkv: frame 4 is 640x480, 307,200 pixels, more "
                                         r"than the 10,000 this server takes per frame"):
        rewrite(grows, tmp_path / "out" / "o.mp4", counting_x2(seen), 2,
                Encoding(preset="ultrafast", max_pixels=100 * 100, overlap=overlap))
    # the big frame never reaches the model; overlapped, the stop may overtake smaller ones
    assert sum(seen) == 3 if not overlap else sum(seen) <= 3
    assert list((tmp_path / "out").iterdir()) == []
    shrinks = resizing_clip(tmp_path / "shrinks.mkv", [(64, 48), (32, 24)])
    with pytest.raises(VideoError, match=r"shrinks.mkv: frame 2 is 32x24 but the video starts "
                                         r"at 64x48; a video whose frame size changes cannot "
                                         r"be upscaled \(re-encode it at one size\)"):
        rewrite(shrinks, tmp_path / "out" / "o.mp4", nearest_x2, 2, Encoding(preset="ultrafast"))
    assert list((tmp_path / "out").iterdir()) == []


def decoded_frames_and_audio(path: Path) -> tuple[list[np.ndarray], list[int], list[bytes]]:
    with av.open(str(path)) as f:
        frames, stamps = [], []
        for frame in f.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            stamps.append(frame.pts)
    with av.open(str(path)) as f:
        audio = [bytes(p) for p in f.demux(audio=0) if p.dts is not None]
    return frames, stamps, audio


def uneven_x2(at_once: list[int], ended: list[int]):
    """``nearest_x2`` whose every third call is slow, so calls made at once end out of order;
    ``at_once`` gets how many calls were running as each began, ``ended`` the calls' numbers
    as they end."""
    lock, running, calls = threading.Lock(), [0], itertools.count()

    def fn(frames: np.ndarray) -> np.ndarray:
        with lock:
            running[0] += 1
            at_once.append(running[0])
            call = next(calls)
        time.sleep(0.05 if call % 3 == 0 else 0.0)
        with lock:
            running[0] -= 1
            ended.append(call)
        return nearest_x2(frames)
    return fn


@pytest.mark.parametrize("batch, workers", [(1, 1), (3, 1), (1, 3), (3, 2)])
def test_the_overlapped_pipeline_writes_the_frames_the_sequential_one_does(tmp_path, batch,
                                                                           workers):
    clip = write_clip(tmp_path / "c.mp4", frames=16)  # each frame brighter than the last
    outs, at_once, ended = {}, [], []
    for overlap in (False, True):
        at_once.clear(), ended.clear()
        outs[overlap] = tmp_path / f"o{overlap}.mp4"
        info = rewrite(clip, outs[overlap], uneven_x2(at_once, ended), 2,
                       Encoding(preset="ultrafast", batch=batch, overlap=overlap,
                                workers=workers))
        assert info.frames == 16
    # with workers, calls ran at once and ended out of order; one by one without
    parallel = max(at_once) > 1 and ended != sorted(ended)
    assert parallel if workers > 1 else max(at_once) == 1 and ended == sorted(ended)
    seq, ovl = (decoded_frames_and_audio(outs[k]) for k in (False, True))
    assert len(seq[0]) == len(ovl[0]) == 16
    assert len({f.mean() for f in seq[0]}) == 16  # a swap of any two frames would show
    assert all(np.array_equal(a, b) for a, b in zip(seq[0], ovl[0], strict=True))
    assert seq[1] == ovl[1] and seq[2] == ovl[2] and seq[2]  # timestamps, audio as copied


def test_the_audio_of_a_video_with_few_frames_goes_on_in_bounded_pieces(tmp_path,
                                                                       monkeypatch):
    # two frames a second apart under 2 s of sound: a batch would carry all of it
    clip = write_clip(tmp_path / "c.mp4", frames=2, fps=1)
    monkeypatch.setattr(video, "HELD_AUDIO", 4)
    carried, run = [], video.Overlap.run
    monkeypatch.setattr(video.Overlap, "run", lambda self, items: run(
        self, (carried.append(len(item[0])) or item for item in items)))
    rewrite(clip, tmp_path / "o.mp4", nearest_x2, 2, Encoding(preset="ultrafast", workers=2))
    source, written = decoded_frames_and_audio(clip), decoded_frames_and_audio(tmp_path / "o.mp4")
    assert len(source[2]) > 8 and max(carried) <= 4  # in pieces of at most 4 packets
    assert written[2] == source[2] and len(written[0]) == 2  # every packet, as it was


@pytest.mark.parametrize("overlap, workers", [(False, 1), (True, 1), (True, 3)])
def test_a_clip_whose_decoding_fails_midway_leaves_no_output(tmp_path, overlap, workers):
    clip = write_clip(tmp_path / "c.mp4", frames=30)
    seen = []

    def upscale(frames):
        seen.append(len(frames))
        return nearest_x2(frames)

    with pytest.raises(VideoError, match="more than 10 frames"):
        rewrite(clip, tmp_path / "out" / "c.mp4", upscale, 2,
                Encoding(preset="ultrafast", batch=2, max_frames=10, overlap=overlap,
                         workers=workers))
    assert seen  # some frames were upscaled before the decoder failed
    assert list((tmp_path / "out").iterdir()) == []
