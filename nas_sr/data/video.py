"""Video in and out with PyAV (its wheel bundles FFmpeg): probe, and rewrite frame by frame.

Frames are decoded, passed through a function in batches and encoded as they come, so
memory holds a few batches whatever the length; decoding, the function and encoding run
on threads of their own (``Encoding.overlap``), so the two ends hide behind the model,
and the model may take several batches at once (``Encoding.workers``).
Timestamps are carried over (fps, duration and variable frame rates kept), the display
rotation is copied, and the audio stream is copied packet for packet (re-encoded to the
container's default audio codec, e.g. Opus for WebM, only where the container cannot
hold it). The output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas_sr.checkpoint import atomic_path

# PyAV is imported where a video is read or written: the cli (for VideoError) and the jobs
# without videos start without loading FFmpeg, or needing it installed
if TYPE_CHECKING:
    import av

# extension -> FFmpeg muxer (named explicitly: the file is written under a temporary name)
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}
VIDEO_EXTENSIONS = tuple(CONTAINERS)
# FFmpeg demuxers of those containers: anything else FFmpeg opens (text as "tty" art,
# a PNG as "png_pipe", ...) is not taken for a video
VIDEO_DEMUXERS = {"mov", "mp4", "matroska", "webm", "avi"}

# (N, H, W, 3) uint8 RGB frames -> (N, H*s, W*s, 3) uint8; or, as planes, (N, H*3/2, W)
# uint8 yuv420p frames (the Y plane's rows, then U's and V's) -> (N, H*s*3/2, W*s)
FrameFn = Callable[[np.ndarray], np.ndarray]


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file and the fix."""


class NotAVideo(VideoError):
    """A file FFmpeg cannot read as one of the video containers at all."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int       # from the container, or duration x fps where it keeps no count
    duration: float   # seconds
    rotation: int     # display rotation, degrees counter-clockwise
    audio: str | None  # the audio codec, None without an audio stream
    container: str     # FFmpeg's demuxer, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    counted: bool = False  # frames is the container's own count, not an estimate
    timed: bool = False    # duration is the video stream's own, so an estimate is close
    constant: bool = False  # a constant frame rate, so such an estimate is exact


@dataclass(frozen=True)
class Encoding:
    """How the output is encoded: H.264 at a constant quality (CRF) by default."""

    codec: str = "libx264"
    crf: int | None = 18       # lower = better and bigger; None = the codec's default
    preset: str | None = "medium"  # x264/x265 speed preset
    pix_fmt: str = "yuv420p"   # what every player decodes
    batch: int = 1             # frames per model call (more is slower on a CPU: bench/)
    options: dict[str, str] = field(default_factory=dict)  # more encoder options
    # what a source may decode to (serve's limits): counted on the decoded frames, since a
    # header's count, duration and first frame's size are the uploader's to write
    max_frames: int | None = None
    max_pixels: int | None = None  # per frame
    overlap: bool = True  # decoding, the model and encoding on three threads at once
    # model calls at once when overlapped, a batch each: on a CPU two one-thread calls
    # outrun one two-thread call, which scales poorly and fights the encoder for the cores;
    # None: one here, upscale_video's pick (nas_sr.deploy.media)
    workers: int | None = None

    def codec_options(self) -> dict[str, str]:
        opts = dict(self.options)
        if self.crf is not None:
            opts.setdefault("crf", str(self.crf))
            if self.codec == "libvpx-vp9":
                opts.setdefault("b", "0")  # constant quality needs the bitrate cap off
        if self.preset and self.codec in ("libx264", "libx265"):
            opts.setdefault("preset", self.preset)
        return opts


def encoded_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """The output's width and height: x ``scale``, an odd side cut by one pixel (4:2:0
    chroma needs even sides)."""
    return width * scale // 2 * 2, height * scale // 2 * 2


def probe(path: str | Path) -> VideoInfo:
    """What ``path`` holds; a file that is not a video with a decodable frame is refused."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not VIDEO_DEMUXERS & set(container.format.name.split(",")):
                raise NotAVideo(f"{path}: not a video container (FFmpeg reads it as "
                                 f"{container.format.name!r}); use MP4, MOV, MKV, AVI or WebM")
            if not container.streams.video:
                raise VideoError(
                    f"{path}: holds only audio; upload a file with pictures in it"
                    if container.streams.audio else
                    f"{path}: holds no stream FFmpeg can read; the file is truncated or "
                    "damaged")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoError(f"{path}: no frame could be decoded; the file is damaged")
            fps = Fraction(stream.average_rate or stream.guessed_rate or 25)
            own = _stream_seconds(stream)
            duration = own or (container.duration or 0) / av.time_base
            audio = container.streams.audio[0].codec_context.name \
                if container.streams.audio else None
            return VideoInfo(first.width, first.height, fps,
                             stream.frames or max(1, round(duration * fps)), duration,
                             int(first.rotation), audio, container.format.name,
                             counted=stream.frames > 0, timed=bool(own),
                             constant=stream.base_rate == stream.average_rate)
    except av.FFmpegError as e:
        raise NotAVideo(f"{path}: cannot be read as a video ({e.strerror}); "
                         "the file is damaged or not a video") from None


def _stream_seconds(stream: av.video.stream.VideoStream) -> float | None:
    """The video stream's own duration: from its header, or Matroska's DURATION tag
    (the container's duration runs to the end of the longest stream, often the audio)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    h, m, sec = (stream.metadata.get("DURATION") or "::").split(":")
    return 3600 * int(h) + 60 * int(m) + float(sec) if sec else None


def encoder_rate(codec: str, rate: int) -> int:
    """``rate`` where ``codec``'s encoder takes it, else the next rate up it takes (Opus
    knows 8-48 kHz only, so a CD's 44.1 kHz goes to 48; the encoder resamples)."""
    import av

    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or rate in rates:
        return rate
    return min((r for r in rates if r >= rate), default=max(rates))


def rewrite(src: str | Path, dest: str | Path, fn: FrameFn, scale: int,
            encoding: Encoding = Encoding(),
            progress: Callable[[int, int], None] | None = None,
            planes: FrameFn | None = None) -> VideoInfo:
    """Write ``dest``: every frame of ``src`` through ``fn`` (x ``scale``), audio kept.

    ``planes``, where given, takes ``fn``'s place for a source with even sides: frames go
    to it as the yuv420p planes they decode to and come back as the planes to encode, so
    no frame is converted to RGB and back (a Y-only model's way, nas_sr.archs.luma).

    ``progress(frames_done, frames_total)`` is called after each batch (the total is the
    container's count, or duration x fps where it keeps none). An odd output side is
    cropped by one pixel (4:2:0 chroma needs even sides). An error or an interrupt
    removes the partial file: ``dest`` appears only when whole. Returns the source's info
    with the frame count as decoded.
    """
    import av

    src, dest = Path(src), Path(dest)
    if dest.suffix.lower() not in CONTAINERS:
        raise VideoError(f"{dest}: unknown video container; use one of "
                         f"{', '.join(VIDEO_EXTENSIONS)}")
    info = probe(src)
    try:
        with (atomic_path(dest) as tmp, av.open(str(src)) as inp,
              av.open(str(tmp), "w", format=CONTAINERS[dest.suffix.lower()]) as out):
            check = _frame_check(src, info, encoding)
            if planes is not None and info.width % 2 == 0 and info.height % 2 == 0:
                fn, layout = planes, "yuv420p"
            else:
                layout = "rgb24"
            frames = _rewrite(inp, out, fn, scale, info, encoding, check, layout,
                              lambda done: progress and progress(done, max(done, info.frames)))
            # a file cut at a packet's end demuxes cleanly, only shorter than its header
            # says; a frame or two of slack for edit lists that hide a count's first frames,
            # and half a count estimated from a variable rate's duration
            exact = info.counted or info.timed and info.constant
            slack = max(2, info.frames // 100) if exact else info.frames // 2
            if (info.counted or info.timed) and frames < info.frames - slack:
                told = "its header lists" if info.counted else \
                    f"its {info.duration:.1f} s at {float(info.fps):.3g} fps make"
                raise VideoError(f"{src}: {frames} of the {info.frames} frames {told} "
                                 f"could be read; the file is truncated or damaged, "
                                 f"so {dest.name} was not written")
    except av.FFmpegError as e:
        raise VideoError(f"{src} -> {dest}: {e.strerror} (codec {encoding.codec!r} in a "
                         f"{dest.suffix} file)") from None
    if progress:
        progress(frames, frames)  # the count is exact now
    return replace(info, frames=frames)


def _frame_check(src: Path, info: VideoInfo,
                 encoding: Encoding) -> Callable[[av.VideoFrame, int], None]:
    """``check(frame, n)``: raises for the ``n``-th decoded frame once past the frame limit,
    over the pixel limit, or of another size than the first (which the output is sized
    for), before it is converted or upscaled."""
    first = (info.width, info.height)

    def check(frame: av.VideoFrame, n: int) -> None:
        if encoding.max_frames is not None and n > encoding.max_frames:
            raise VideoError(f"{src}: holds more than {encoding.max_frames} frames (its header "
                             f"suggests {info.frames}), more than this server takes; cut it "
                             "shorter")
        w, h = frame.width, frame.height
        if encoding.max_pixels is not None and w * h > encoding.max_pixels:
            raise VideoError(f"{src}: frame {n} is {w}x{h}, {w * h:,} pixels, more than the "
                             f"{encoding.max_pixels:,} this server takes per frame")
        if (w, h) != first:
            raise VideoError(f"{src}: frame {n} is {w}x{h} but the video starts at "
                             f"{first[0]}x{first[1]}; a video whose frame size changes cannot "
                             "be upscaled (re-encode it at one size)")

    return check


def _video_stream(out: av.container.OutputContainer, vin: av.video.stream.VideoStream,
                  fps: Fraction, size: tuple[int, int], rotation: int,
                  encoding: Encoding) -> av.video.stream.VideoStream:
    """The output's video stream, ``size`` (the first frame's x scale), in ``vin``'s colours
    and clock."""
    from av.video.reformatter import ColorRange

    ctx = vin.codec_context
    try:
        vout = out.add_stream(encoding.codec, rate=fps, options=encoding.codec_options())
    except ValueError as e:  # an unknown encoder, or one the container cannot hold
        raise VideoError(f"codec {encoding.codec!r}: {e}; use e.g. libx264 (mp4, mov, mkv, "
                         "avi) or libvpx-vp9 (webm)") from None
    vout.width, vout.height = size
    vout.pix_fmt = encoding.pix_fmt
    if rotation:  # before anything is muxed: the header carries it
        vout.set_display_rotation(rotation)
    # a constant rate gets exact 1/fps ticks (an MKV's millisecond stamps would drift);
    # a variable one keeps the source's clock, so every frame keeps its time
    constant = vin.base_rate is not None and vin.base_rate == vin.average_rate
    vout.codec_context.time_base = Fraction(1, 1) / Fraction(fps) if constant else vin.time_base
    vout.codec_context.colorspace = ctx.colorspace
    vout.codec_context.color_primaries = ctx.color_primaries
    vout.codec_context.color_trc = ctx.color_trc
    vout.codec_context.color_range = ColorRange.MPEG  # what yuv420p output is
    return vout


def _rewrite(inp: av.container.InputContainer, out: av.container.OutputContainer,
             fn: FrameFn, scale: int, info: VideoInfo, encoding: Encoding,
             check: Callable[[av.VideoFrame, int], None], layout: str,
             on_frames: Callable[[int], None]) -> int:
    """The work of :func:`rewrite`; each decoded frame passes ``check`` first, and reaches
    ``fn`` as ``layout`` (rgb24 or yuv420p, MPEG range); ``on_frames(done)`` after each
    batch; the frame count.

    Three stages: decoding (demux, decode, to ``layout``), the model (``fn``) and encoding (YUV,
    encode, mux, the audio too, so the output is written by one thread in stream order).
    With ``encoding.overlap`` each runs on threads of its own, handing batches on through
    short queues, so decoding and encoding hide behind the model call (FFmpeg, torch and
    ONNX Runtime release the GIL), and ``encoding.workers`` batches are in the model at
    once; otherwise they run one after another on this thread. Both write the same file."""
    import av
    from av.video.reformatter import ColorRange

    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    ain = inp.streams.audio[0] if inp.streams.audio else None
    fps = vin.average_rate or vin.guessed_rate or 25
    vout = _video_stream(out, vin, fps, encoded_size(info.width, info.height, scale),
                         info.rotation, encoding)
    tick = vout.codec_context.time_base
    copy_audio = ain is not None and ain.codec_context.name in out.supported_codecs
    aout = None
    if ain is not None:
        aout = out.add_stream_from_template(ain) if copy_audio else out.add_stream(
            out.default_audio_codec,
            rate=encoder_rate(out.default_audio_codec, ain.codec_context.sample_rate),
            layout=ain.codec_context.layout.name)  # mono stays mono
    done = 0

    def to_model(item: tuple) -> tuple:
        sound, meta, frames = item
        if frames is None:  # the audio after the last frame
            return item
        sr = fn(frames)  # even sides in, even sides out on yuv420p: nothing to crop
        return sound, meta, sr if layout == "yuv420p" else sr[:, :vout.height, :vout.width]

    def to_file(item: tuple) -> None:
        nonlocal done
        sound, meta, frames = item
        for kind, what in sound:  # a packet copied as it is, or samples to encode
            out.mux(what if kind == "audio" else aout.encode(what))
        if frames is None:
            return
        for i, ((pts, time_base, colorspace), img) in enumerate(zip(meta, frames, strict=True)):
            new = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=layout)
            if layout == "yuv420p":  # so a yuv420p output takes it as it is
                new.color_range = ColorRange.MPEG
            new.colorspace = colorspace
            seconds = pts * time_base if pts is not None else (done + i) / Fraction(fps)
            new.pts, new.time_base = round(seconds / tick), tick
            new = new.reformat(format=encoding.pix_fmt, dst_color_range=ColorRange.MPEG)
            out.mux(vout.encode(new))
        done += len(meta)
        on_frames(done)

    def decoded() -> Iterator[tuple]:
        """The source as (audio, frames' stamps, frames) items, in stream order: each batch
        of frames carries the audio demuxed before it, so the queues count batches (audio
        goes on alone past ``HELD_AUDIO`` packets, or after the last frame)."""
        batch: list[av.VideoFrame] = []
        sound: list[tuple[str, Any]] = []
        count = 0

        def video() -> tuple:
            if layout == "rgb24":
                frames = np.stack([f.to_ndarray(format="rgb24", src_color_range=f.color_range)
                                   for f in batch])
            else:  # as decoded where it is yuv420p already (reformat returns it as it is)
                frames = np.stack([f.reformat(format="yuv420p", src_color_range=f.color_range,
                                              dst_color_range=ColorRange.MPEG).to_ndarray()
                                   for f in batch])
            item = list(sound), [(f.pts, f.time_base, f.colorspace) for f in batch], frames
            sound.clear()
            batch.clear()
            return item

        for packet in inp.demux([s for s in (vin, ain) if s is not None]):
            if packet.stream is ain:
                if copy_audio:
                    if packet.dts is not None:  # the demuxer's end-of-stream marker has none
                        packet.stream = aout
                        sound.append(("audio", packet))
                else:  # decoded, for the container's codec to encode
                    for frame in packet.decode():
                        frame.pts = None  # the encoder numbers its own samples
                        sound.append(("samples", frame))
                if len(sound) >= HELD_AUDIO:  # few frames, long audio (a still's song)
                    yield list(sound), None, None
                    sound.clear()
                continue
            for frame in packet.decode():
                count += 1
                check(frame, count)
                batch.append(frame)
                if len(batch) >= encoding.batch:
                    yield video()
        if batch:
            yield video()
        if sound:
            yield list(sound), None, None

    if encoding.overlap:
        # the model's calls run on a pool; their futures reach the file in stream order,
        # up to `workers` of them waiting; on an error no queued batch goes on to the model
        workers = encoding.workers or 1
        pool = ThreadPoolExecutor(workers, thread_name_prefix="video model")
        try:
            Overlap([lambda item: pool.submit(to_model, item),
                     lambda called: to_file(called.result())],
                    depths=[Overlap.DEPTH, max(Overlap.DEPTH, workers)],
                    on_stop=lambda: pool.shutdown(wait=False, cancel_futures=True)
                    ).run(decoded())
        finally:
            pool.shutdown(cancel_futures=True)
    else:
        for item in decoded():
            to_file(to_model(item))
    out.mux(vout.encode(None))
    if aout is not None and not copy_audio:
        out.mux(aout.encode(None))
    return done


class Overlap:
    """Items of a generator through ``stages``, each stage on a thread of its own with a
    short queue before it; the first error of any stage (or of the generator) stops them
    all and is raised to the caller, after every thread has ended."""

    DEPTH = 2  # items waiting before each stage: enough to hide jitter, little memory

    def __init__(self, stages: list[Callable[[Any], Any]], depths: list[int] | None = None,
                 on_stop: Callable[[], None] = lambda: None):
        self.stages, self.on_stop = stages, on_stop
        self.queues = [queue.Queue(d) for d in depths or [self.DEPTH] * len(stages)]
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def _fail(self, e: BaseException, first: bool = False) -> None:
        """Record ``e`` (``first``: what happened on the caller's thread is raised) and stop
        every stage."""
        self.errors.insert(0 if first else len(self.errors), e)
        self.stop.set()
        self.on_stop()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def _stage(self, i: int) -> None:
        q_in = self.queues[i]
        q_out = self.queues[i + 1] if i + 1 < len(self.stages) else None
        try:
            while not self.stop.is_set():
                try:
                    item = q_in.get(timeout=0.05)
                except queue.Empty:
                    continue
                if item is _END:
                    if q_out is not None:
                        self._put(q_out, _END)
                    return
                result = self.stages[i](item)
                if q_out is not None and not self._put(q_out, result):
                    return
        except BaseException as e:  # handed to the caller by run()
            self._fail(e)

    def run(self, items: Iterator[Any]) -> None:
        threads = [threading.Thread(target=self._stage, args=(i,), daemon=True,
                                    name=f"video stage {i + 1}")
                   for i in range(len(self.stages))]
        for t in threads:
            t.start()
        try:
            for item in items:
                if not self._put(self.queues[0], item):
                    break
            else:
                self._put(self.queues[0], _END)
        except BaseException as e:  # a decoding error, or an interrupt
            self._fail(e, first=True)
        for t in threads:
            while t.is_alive():
                try:
                    t.join()
                except BaseException as e:  # an interrupt while the stages finish: stop them
                    self._fail(e, first=True)
        if self.errors:
            raise self.errors[0]


_END = object()  # the end of the items
HELD_AUDIO = 256  # audio packets a batch of frames may carry: more go on by themselves
