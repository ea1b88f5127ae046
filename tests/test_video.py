"""Decoding: real clips (frame counts, rotation, stream choice), exact frame indices, codecs and
containers written with PyAV, awkward and broken files, frame folders."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_VIDEOS, decode_index, index_frames, stripes, write_audio_only, write_video
from text4vis import video
from text4vis.video import VideoError, count_frames, read_all_frames, read_frame_folder, read_frames


def shared(name: str) -> str:
    path = os.path.join(SHARED_VIDEOS, name)
    assert os.path.isfile(path), f"test video {name} is missing from tests/data/videos"
    return path


def raw_first_frame(path: str, stream_index: int | None = None) -> tuple[np.ndarray, int]:
    """Frame 0 as PyAV gives it (coded orientation) and its display rotation."""
    with av.open(path) as c:
        stream = c.streams.video[0] if stream_index is None else c.streams[stream_index]
        frame = next(c.decode(stream))
        return frame.to_ndarray(format="rgb24"), int(frame.rotation or 0)


def assert_one_line_error(exc: BaseException, path: str) -> None:
    msg = str(exc)
    assert path in msg, msg
    assert "\n" not in msg and msg.strip() == msg and len(msg) < 400, msg


# ----------------------------------------------------------------------------- real clips

# file, frames that decode (SOURCES.md), upright (height, width)
REAL = [
    ("arm_wrestling_h264.mp4", 280, (256, 340)),
    ("cleaning_pool_xvid_mp3.avi", 164, (240, 320)),
    ("shooting_basketball_h264_29.97fps.mp4", 300, (240, 426)),
    ("flipping_pancake_h264_opus.mkv", 310, (240, 426)),
    ("rotate90_keyboard_3frames_0.1s.mov", 3, (568, 320)),
    ("cricket_shot_ucf101.gif", 79, (224, 224)),
    ("dog_android_vfr_rotate180_h264_aac.mp4", 25, (720, 1280)),
    ("iphone4s_rotate90_h264_aac.mov", 66, (568, 320)),
    ("nasa_multistream_h264_aac_subs.mp4", 325, (180, 320)),
]


@pytest.mark.parametrize("name,frames,size", REAL, ids=[r[0].split("_")[0] for r in REAL])
def test_real_clip_frame_count_and_shape(name, frames, size):
    path = shared(name)
    assert count_frames(path) == frames
    seen = []
    out, n = read_frames(path, lambda n: seen.append(n) or [0, n // 2, n - 1])
    assert n == frames
    assert seen == [frames]  # choose() is called once, with the true count (no packet/frame disagreement)
    assert out.dtype == np.uint8 and out.shape == (3, *size, 3)


def test_mkv_without_nb_frames_counts_decoded_frames():
    path = shared("flipping_pancake_h264_opus.mkv")
    with av.open(path) as c:
        assert c.streams.video[0].frames == 0  # the header does not say
    frames = read_all_frames(path)
    assert frames.shape == (310, 240, 426, 3)


def test_rotate90_movs_come_out_portrait_and_turned_clockwise():
    for name in ("rotate90_keyboard_3frames_0.1s.mov", "iphone4s_rotate90_h264_aac.mov"):
        path = shared(name)
        raw, rotation = raw_first_frame(path)
        assert raw.shape == (320, 568, 3) and rotation == -90
        out, _ = read_frames(path, lambda n: [0])
        assert out.shape == (1, 568, 320, 3)
        # display matrix -90 (counter-clockwise) = a quarter turn clockwise = np.rot90 with k=-1
        np.testing.assert_array_equal(out[0], np.rot90(raw, k=-1))
        assert not np.array_equal(out[0], np.rot90(raw, k=1))


def test_rotate180_dog_comes_out_upright():
    path = shared("dog_android_vfr_rotate180_h264_aac.mp4")
    raw, rotation = raw_first_frame(path)
    assert raw.shape == (720, 1280, 3) and abs(rotation) == 180
    out, n = read_frames(path, lambda n: [0])
    assert n == 25
    np.testing.assert_array_equal(out[0], np.rot90(raw, k=2))
    assert not np.array_equal(out[0], raw)


def test_iphone_audio_first_stream_order():
    path = shared("iphone4s_rotate90_h264_aac.mov")
    with av.open(path) as c:
        assert c.streams[0].type == "audio" and c.streams[1].type == "video"
    out, n = read_frames(path, lambda n: range(n))
    assert n == 66 and out.shape == (66, 568, 320, 3)


def test_multistream_uses_default_video_stream():
    path = shared("nasa_multistream_h264_aac_subs.mp4")
    with av.open(path) as c:
        sizes = [(s.index, s.codec_context.width, s.codec_context.height) for s in c.streams.video]
    assert sizes == [(0, 320, 180), (3, 480, 270)]
    out, n = read_frames(path, lambda n: [0, n - 1])
    assert n == 325 and out.shape == (2, 180, 320, 3)
    raw0, _ = raw_first_frame(path, stream_index=0)
    np.testing.assert_array_equal(out[0], raw0)


def test_gif_decodes_to_rgb():
    path = shared("cricket_shot_ucf101.gif")
    out, n = read_frames(path, lambda n: [0, 40, 78])
    assert n == 79 and out.shape == (3, 224, 224, 3)
    assert out.std() > 10  # real content, not a blank RGBA-to-RGB accident
    assert not np.array_equal(out[0], out[2])


def test_real_clip_frames_match_sequential_decoding():
    """Asked-for frames equal those of a plain sequential PyAV decode (index i = i-th decoded frame)."""
    path = shared("cleaning_pool_xvid_mp3.avi")
    want = [163, 0, 81, 81, 5]
    with av.open(path) as c:
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out, n = read_frames(path, lambda n: want)
    assert n == len(ref) == 164
    for got, i in zip(out, want):
        np.testing.assert_array_equal(got, ref[i])


# ----------------------------------------------------------------------------- exact indices

def test_index_video_exact_frames(index_video):
    assert count_frames(index_video) == 50
    frames, n = read_frames(index_video, lambda n: range(n))
    assert n == 50
    assert [decode_index(f) for f in frames] == list(range(50))


@pytest.mark.parametrize("wanted", [
    [0, 49], [49, 0, 25], [7, 7, 7, 3, 3], [10, 48, 1, 48, 10, 0], list(range(49, -1, -3)),
])
def test_index_video_unsorted_and_repeated(index_video, wanted):
    frames, n = read_frames(index_video, lambda n: wanted)
    assert n == 50 and frames.shape == (len(wanted), 64, 128, 3)
    assert [decode_index(f) for f in frames] == wanted


def test_out_of_range_index_is_a_one_line_error(index_video):
    with pytest.raises(VideoError) as e:
        read_frames(index_video, lambda n: [0, n])
    assert_one_line_error(e.value, index_video)
    assert "frame 50 of 50" in str(e.value)


# ----------------------------------------------------------------------------- codecs and containers

CODECS = [
    ("h264.mp4", "libx264", "yuv420p"),
    ("vp9.webm", "libvpx-vp9", "yuv420p"),
    ("mjpeg.avi", "mjpeg", "yuvj420p"),
    ("mpeg4.avi", "mpeg4", "yuv420p"),
    ("ffv1.mkv", "ffv1", "yuv420p"),
]


@pytest.mark.parametrize("fname,codec,pix_fmt", CODECS, ids=[c[0] for c in CODECS])
def test_codecs_and_containers(tmp_path, fname, codec, pix_fmt):
    path = str(tmp_path / fname)
    write_video(path, index_frames(23), codec=codec, pix_fmt=pix_fmt)
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.name == {"libvpx-vp9": "vp9", "libx264": "h264"}.get(codec, codec)
    assert count_frames(path) == 23
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 23 and frames.shape == (23, 64, 128, 3)
    assert [decode_index(f) for f in frames] == list(range(23))


def test_ten_bit_h264(tmp_path):
    if "yuv420p10le" not in [f.name for f in (av.codec.Codec("libx264", "w").video_formats or [])]:
        pytest.skip("this libx264 build has no 10-bit encoder")
    path = str(tmp_path / "ten_bit.mp4")
    write_video(path, index_frames(15), pix_fmt="yuv420p10le")
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    frames, n = read_frames(path, lambda n: [14, 0, 7])
    assert n == 15 and frames.dtype == np.uint8
    assert [decode_index(f) for f in frames] == [14, 0, 7]
    assert frames.max() >= 250 and frames.min() <= 5  # full 8-bit range, not 10-bit values cut to 8 bits


def test_gray_content_and_gray_stream(tmp_path):
    # a true gray-format stream (no chroma at all)
    path = str(tmp_path / "gray.mkv")
    levels = np.linspace(0, 255, 10).astype(np.uint8)
    frames_in = np.broadcast_to(levels[:, None, None, None], (10, 32, 48, 3)).copy()
    write_video(path, frames_in, codec="ffv1", pix_fmt="gray")
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gray"
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 10 and frames.shape == (10, 32, 48, 3)
    np.testing.assert_array_equal(frames[..., 0], frames[..., 1])
    np.testing.assert_array_equal(frames[..., 1], frames[..., 2])
    assert np.abs(frames.mean(axis=(1, 2, 3)) - levels).max() <= 2
    # gray content in an ordinary H.264 stream: channels stay (almost) equal
    path = str(tmp_path / "gray_content.mp4")
    write_video(path, index_frames(12))
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 12 and [decode_index(f) for f in frames] == list(range(12))
    assert np.abs(frames[..., 0].astype(int) - frames[..., 2].astype(int)).max() <= 8


def test_wide_4000x16(odd_inputs):
    path = odd_inputs["wide"]
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 6 and frames.shape == (6, 16, 4000, 3)
    expected = stripes(6, 16, 4000, 500)
    # stripe centres keep their colour (compression only blurs the edges)
    for i in range(6):
        for s in range(8):
            centre = frames[i, :, s * 500 + 200: s * 500 + 300]
            assert abs(float(centre.mean()) - float(expected[i, 0, s * 500 + 250, 0])) < 30, (i, s)


def test_odd_dimensions(tmp_path):
    path = str(tmp_path / "odd.mkv")
    frames_in = np.random.default_rng(0).integers(0, 256, (4, 17, 33, 3), dtype=np.uint8)
    frames_in[:, :, :16] = 0
    frames_in[:, :, 17:] = 255
    write_video(path, frames_in, codec="ffv1")
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 4 and frames.shape == (4, 17, 33, 3)
    assert frames[:, :, :14].mean() < 20 and frames[:, :, 19:].mean() > 235


def test_single_frame_video(odd_inputs):
    path = odd_inputs["single"]
    assert count_frames(path) == 1
    frames, n = read_frames(path, lambda n: [0] * 4)
    assert n == 1 and frames.shape == (4, 64, 128, 3)
    assert [decode_index(f) for f in frames] == [0, 0, 0, 0]


def test_truncated_mkv_keeps_frames_that_decode(odd_inputs):
    path = odd_inputs["truncated_mkv"]
    seen = []
    try:
        frames, n = read_frames(path, lambda n: seen.append(n) or list(range(n)))
    except VideoError as exc:
        assert_one_line_error(exc, path)
        return
    assert 0 < n < 40 and frames.shape[0] == n
    assert [decode_index(f[:32]) for f in frames] == list(range(n))  # the top half shows the index
    assert seen[-1] == n


def test_truncated_mp4(odd_inputs):
    path = odd_inputs["truncated_mp4"]
    try:
        frames, n = read_frames(path, lambda n: list(range(n)))
    except VideoError as exc:
        assert_one_line_error(exc, path)
    else:
        assert 0 < n < 40 and [decode_index(f[:32]) for f in frames] == list(range(n))


@pytest.mark.parametrize("case,words", [
    ("zero", "empty"), ("text", "not a readable video"), ("audio_only", "no video stream"), ("missing", "no such file"),
])
def test_unreadable_files_raise_one_line_video_error(odd_inputs, case, words):
    path = odd_inputs[case]
    for call in (lambda: read_frames(path, lambda n: [0]), lambda: count_frames(path)):
        with pytest.raises(VideoError) as e:
            call()
        assert_one_line_error(e.value, path)
        assert words in str(e.value)


def test_audio_only_mp2_in_mka(tmp_path):
    path = str(tmp_path / "tone.mka")
    write_audio_only(path, "mp2")
    with pytest.raises(VideoError) as e:
        read_frames(path, lambda n: [0])
    assert_one_line_error(e.value, path)
    assert "no video stream" in str(e.value)


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(VideoError) as e:
        read_frames(str(tmp_path), lambda n: [0])
    assert_one_line_error(e.value, str(tmp_path))


def test_display_rotation_written_by_pyav(tmp_path):
    """A marker in the coded top-left corner ends where the display matrix puts it."""
    base = np.zeros((3, 64, 128, 3), np.uint8)
    base[:, :16, :16] = 255
    # rotation (counter-clockwise degrees) -> upright shape and the corner the marker lands in
    cases = {90: ((128, 64), "bl"), -90: ((128, 64), "tr"), 180: ((64, 128), "br")}
    for degrees, (shape, corner) in cases.items():
        path = str(tmp_path / f"rot{degrees}.mp4")
        with av.open(path, "w") as out:
            s = out.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 128, 64, "yuv420p"
            s.set_display_rotation(degrees)
            for f in base:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
        frames, _ = read_frames(path, lambda n: [0])
        img = frames[0]
        assert img.shape[:2] == shape, degrees
        corners = {"tl": img[:8, :8], "tr": img[:8, -8:], "bl": img[-8:, :8], "br": img[-8:, -8:]}
        bright = [k for k, v in corners.items() if v.mean() > 200]
        assert bright == [corner], (degrees, bright)


# ----------------------------------------------------------------------------- frame folders

def test_frame_folder_template_and_bias(tmp_path):
    frames_in = index_frames(12, 32, 64)
    d1 = tmp_path / "v1"
    d1.mkdir()
    for i, f in enumerate(frames_in):  # default template img_{:05d}.jpg with index_bias 1
        Image.fromarray(f).save(d1 / f"img_{i + 1:05d}.jpg", quality=95)
    frames, n = read_frame_folder(str(d1), lambda n: [11, 0, 5, 5], 12)
    assert n == 12 and frames.shape == (4, 32, 64, 3)
    assert [decode_index(f) for f in frames] == [11, 0, 5, 5]

    d2 = tmp_path / "v2"
    d2.mkdir()
    for i, f in enumerate(frames_in):  # another template, 0-based
        Image.fromarray(f).save(d2 / f"frame_{i:03d}.png")
    frames, n = read_frame_folder(str(d2), lambda n: list(range(n)), 12, image_tmpl="frame_{:03d}.png", index_bias=0)
    np.testing.assert_array_equal(frames, frames_in)  # PNG: lossless


def test_frame_folder_errors(tmp_path):
    d = tmp_path / "short"
    d.mkdir()
    for i in range(3):
        Image.fromarray(index_frames(3, 32, 64)[i]).save(d / f"img_{i + 1:05d}.jpg")
    # the list line says 5 frames but there are 3: the folder's 3 are sampled (issue 12, item 13)
    assert read_frame_folder(str(d), lambda n: [n - 1], 5)[1] == 3
    (d / "img_00002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoError) as e:
        read_frame_folder(str(d), lambda n: [1], 3)
    assert_one_line_error(e.value, str(d / "img_00002.jpg"))
    with pytest.raises(VideoError) as e:
        read_frame_folder(str(tmp_path / "nope"), lambda n: [0], 3)
    assert_one_line_error(e.value, str(tmp_path / "nope"))
    assert read_frame_folder(str(d), lambda n: [0], 0)[1] == 3   # a list count of 0 is counted too
    (tmp_path / "none").mkdir()
    with pytest.raises(VideoError) as e:
        read_frame_folder(str(tmp_path / "none"), lambda n: [0], 3)
    assert_one_line_error(e.value, str(tmp_path / "none"))


def test_find_videos_recursive_sorted_keeps_missing(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for p in ["b/z.mp4", "b/a.MKV", "a/deep/c.webm", "a/notes.txt", "top.avi"]:
        (tmp_path / p).write_bytes(b"x")
    found = video.find_videos([str(tmp_path), str(tmp_path / "gone.mp4")])
    rel = [os.path.relpath(p, tmp_path) for p in found]
    assert rel == ["top.avi", "a/deep/c.webm", "b/a.MKV", "b/z.mp4", "gone.mp4"]


def test_truncated_faststart_mp4_resamples_on_frames_that_decode(tmp_path):
    """Index up front, data cut: the header lists more packets than decode. Sampling is redone on
    the frames that really decode, and the frames returned are exactly the ones asked for."""
    rng = np.random.default_rng(0)
    busy = np.concatenate([index_frames(40, 64, 128)[:, :32],
                           rng.integers(0, 256, (40, 32, 128, 3), dtype=np.uint8)], 1)
    path = str(tmp_path / "faststart.mp4")
    with av.open(path, "w", options={"movflags": "+faststart"}) as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 128, 64, "yuv420p", {"g": "10"}
        for f in busy:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    data = open(path, "rb").read()
    assert data[:64].find(b"moov") > 0  # the index really is at the front
    cut = str(tmp_path / "cut.mp4")
    with open(cut, "wb") as f:
        f.write(data[: int(len(data) * 0.6)])
    packets = count_frames(cut)
    seen = []
    frames, n = read_frames(cut, lambda n: seen.append(n) or [0, n // 2, n - 1])
    assert 0 < n < packets < 40
    assert seen == [packets, n]
    assert [decode_index(f[:32]) for f in frames] == [0, n // 2, n - 1]


def _two_stream_file(path: str, default: int | None) -> None:
    """Matroska with two video streams: #0 is 10 frames 64x128 counting up, #1 is 6 frames 32x64 counting
    down; `default` says which one carries the "default" flag (None: neither)."""
    with av.open(path, "w") as out:
        streams = []
        for w, h in ((128, 64), (64, 32)):
            s = out.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            streams.append(s)
        for i, s in enumerate(streams):
            s.disposition = av.stream.Disposition.default if i == default else 0
        a, b = index_frames(10), index_frames(6, 32, 64)[::-1].copy()
        for i in range(10):
            for p in streams[0].encode(av.VideoFrame.from_ndarray(a[i], format="rgb24")):
                out.mux(p)
            if i < 6:
                for p in streams[1].encode(av.VideoFrame.from_ndarray(b[i], format="rgb24")):
                    out.mux(p)
        for s in streams:
            for p in s.encode():
                out.mux(p)


def test_default_flag_picks_the_video_stream(tmp_path):
    path = str(tmp_path / "second_default.mkv")
    _two_stream_file(path, default=1)
    with av.open(path) as c:
        assert [bool(int(s.disposition) & int(av.stream.Disposition.default)) for s in c.streams.video] == [False, True]
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 6 and frames.shape == (6, 32, 64, 3)
    assert [decode_index(f) for f in frames] == [5, 4, 3, 2, 1, 0]
    assert count_frames(path) == 6


def test_no_default_flag_takes_the_first_video_stream(tmp_path):
    path = str(tmp_path / "no_default.mkv")
    _two_stream_file(path, default=None)
    with av.open(path) as c:
        flags = [int(s.disposition) & int(av.stream.Disposition.default) for s in c.streams.video]
    if any(flags):
        pytest.skip("this Matroska muxer flags a default stream by itself")
    frames, n = read_frames(path, lambda n: range(n))
    assert n == 10 and [decode_index(f) for f in frames] == list(range(10))


def test_write_video_rotation_helper(tmp_path):
    """conftest.write_video(rotation=90) means the old "rotate" tag: display turned 90 degrees clockwise."""
    base = np.zeros((2, 64, 128, 3), np.uint8)
    base[:, :16, :16] = 255
    path = str(tmp_path / "rotate_tag90.mp4")
    write_video(path, base, rotation=90)
    raw, rotation = raw_first_frame(path)
    assert rotation == -90 and raw.shape == (64, 128, 3)
    frames, _ = read_frames(path, lambda n: [0, 1])
    assert frames.shape == (2, 128, 64, 3)
    assert frames[:, :8, -8:].mean() > 200 and frames[:, :8, :8].mean() < 50  # top-left went top-right
