import numpy as np
import pytest
import torch

from videoforge.pipelines.video_io import read_video, to_uint8_frames, write_gif, write_mp4, write_png_frames


def _moving_square(t=9, h=48, w=64):
    frames = np.full((t, h, w, 3), 30, np.uint8)
    for i in range(t):
        frames[i, 10:26, 4 + 4 * i : 20 + 4 * i] = (220, 40, 40)
    return frames


def test_mp4_round_trip(tmp_path):
    frames = _moving_square()
    path = write_mp4(frames, tmp_path / "sub" / "v.mp4", fps=24)
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
    back, fps = read_video(path)
    assert back.shape == frames.shape and fps == 24
    # lossy but close (crf 17); the square is where it was
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 3
    assert back[5, 18, 4 + 20 + 8, 0] > 150 and back[5, 18, 4 + 20 + 8, 2] < 100
    assert read_video(path, max_frames=3)[0].shape[0] == 3


def test_mp4_into_a_file_object_with_a_preset(tmp_path):
    import io

    frames = _moving_square()
    buf = io.BytesIO()
    assert write_mp4(frames, buf, fps=12, preset="veryfast") is buf
    (tmp_path / "v.mp4").write_bytes(buf.getvalue())
    back, fps = read_video(tmp_path / "v.mp4")
    assert back.shape == frames.shape and fps == 12
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 3


def test_png_and_gif(tmp_path):
    import cv2

    frames = _moving_square(t=3)
    paths = write_png_frames(frames, tmp_path / "frames")
    assert [p.name for p in paths] == ["00000.png", "00001.png", "00002.png"]
    np.testing.assert_array_equal(cv2.imread(str(paths[1]))[..., ::-1], frames[1])
    gif = write_gif(frames, tmp_path / "p.gif", fps=12)
    back, _ = read_video(gif)
    assert back.shape == frames.shape


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        write_mp4(np.zeros((2, 15, 16, 3), np.uint8), tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match="uint8 frames"):
        write_mp4(np.zeros((2, 16, 16, 3), np.float32), tmp_path / "f.mp4")
    with pytest.raises(FileNotFoundError, match="no video at"):
        read_video(tmp_path / "missing.mp4")
    assert not (tmp_path / "odd.mp4").exists()


def test_to_uint8_frames():
    video = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 4).expand(3, 2, 1, 4)
    out = to_uint8_frames(video)
    assert out.shape == (2, 1, 4, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 128, 255, 255]
