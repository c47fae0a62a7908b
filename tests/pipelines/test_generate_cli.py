"""`videoforge generate` end to end on a tiny random model folder: mp4 on disk + sidecar."""

import json

import pytest

from videoforge.cli import main
from videoforge.pipelines.generate import Job, read_prompts_file
from videoforge.pipelines.video_io import read_video


def test_generate_writes_decodable_mp4_and_sidecar(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "clips" / "circle.mp4"
    rc = main([
        "generate", "--prompt", "a red circle moving to the right", "--model-dir", str(tiny_model_dir),
        "--out", str(out), "--seed", "7", "--size", "48x64", "--frames", "9", "--steps", "2", "--quiet", "--gif",
    ])
    assert rc == 0
    frames, fps = read_video(out)
    assert frames.shape == (9, 48, 64, 3) and fps == 12  # asked frames and size; fps from videoforge.json
    assert out.with_suffix(".gif").is_file()
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "a red circle moving to the right"
    assert (sidecar["seed"], sidecar["height"], sidecar["width"], sidecar["num_frames"]) == (7, 48, 64, 9)
    assert sidecar["num_inference_steps"] == 2
    # unset options are recorded with the folder's defaults
    assert (sidecar["guidance_scale"], sidecar["flow_shift"], sidecar["cfg_scale"]) == (4.0, 5.0, 1.0)
    assert sidecar["model_files"] == {"transformer/diffusion_pytorch_model.safetensors": "sha256:test-dit",
                                      "vae/diffusion_pytorch_model.safetensors": "sha256:test-vae"}
    assert sidecar["dtype"] == "float32" and sidecar["video"] == "circle.mp4"
    assert str(out) in capsys.readouterr().out


def test_generate_prompts_file_numbered_outputs(tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "# a comment\n"
        "a red circle moving to the right\n"
        "\n"
        '{"prompt": "a blue square", "seed": 3, "frames": 1, "size": "32x32", "cfg_scale": 2.0}\n'
    )
    rc = main(["generate", "--prompts-file", str(prompts), "--model-dir", str(tiny_model_dir),
               "--out", str(tmp_path / "many"), "--seed", "11", "--steps", "1", "--quiet"])
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert files == ["000_a-red-circle-moving-to-the-right.json", "000_a-red-circle-moving-to-the-right.mp4",
                     "001_a-blue-square.json", "001_a-blue-square.mp4"]
    first = json.loads((tmp_path / "many" / files[0]).read_text())
    second = json.loads((tmp_path / "many" / files[2]).read_text())
    assert (first["seed"], first["num_frames"], first["height"], first["width"]) == (11, 5, 32, 48)
    assert (second["seed"], second["num_frames"], second["height"], second["width"]) == (3, 1, 32, 32)
    assert second["cfg_scale"] == 2.0 and second["negative_prompt"].startswith("Aerial view")
    assert read_video(tmp_path / "many" / files[3])[0].shape == (1, 32, 32, 3)


def test_cfg_scale_and_negative_prompt_default_to_the_folder(tiny_model_dir, tmp_path):
    import shutil

    folder = tmp_path / "cfg-model"
    shutil.copytree(tiny_model_dir, folder)
    meta = json.loads((folder / "videoforge.json").read_text())
    (folder / "videoforge.json").write_text(json.dumps({**meta, "cfg_scale": 3.0, "negative_prompt": ""}))
    out = tmp_path / "v.mp4"
    assert main(["generate", "--prompt", "a red circle", "--model-dir", str(folder), "--out", str(out),
                 "--seed", "1", "--steps", "1", "--quiet"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert (sidecar["cfg_scale"], sidecar["negative_prompt"]) == (3.0, "")
    assert main(["generate", "--prompt", "a red circle", "--model-dir", str(folder), "--out", str(out),
                 "--seed", "1", "--steps", "1", "--quiet", "--cfg-scale", "1"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["cfg_scale"] == 1.0


def test_generate_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    args = ["generate", "--prompt", "x", "--model-dir", str(tiny_model_dir), "--quiet"]
    assert main(args + ["--size", "30x50", "--out", str(tmp_path / "a.mp4")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nearest valid size 32x48" in err
    assert main(args + ["--out", str(tmp_path / "a.avi")]) == 1
    assert ".mp4 path" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "--model-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "a.mp4")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mp4"))


def test_read_prompts_file_errors(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a", "stpes": 3}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:1: unknown setting 'stpes'"):
        read_prompts_file(f, Job(prompt=""))
    f.write_text('{"seed": 3}\n')
    with pytest.raises(ValueError, match="needs a non-empty \"prompt\""):
        read_prompts_file(f, Job(prompt=""))
    f.write_text("\n# only comments\n")
    with pytest.raises(ValueError, match="has no prompts"):
        read_prompts_file(f, Job(prompt=""))
    f.write_text('{"prompt": "a", "steps": 3, "guidance": 2.5}\nplain\n')
    jobs = read_prompts_file(f, Job(prompt="", seed=1))
    assert [(j.prompt, j.num_inference_steps, j.guidance_scale, j.seed) for j in jobs] == [("a", 3, 2.5, 1), ("plain", None, None, 1)]


def test_demo_and_default_model_use_the_bundled_folder(tiny_model_dir, tmp_path, monkeypatch):
    import videoforge.bundled

    monkeypatch.setattr(videoforge.bundled, "bundled_model_dir", lambda: None)
    assert main(["generate", "--prompt", "x", "--out", str(tmp_path / "a.mp4")]) == 1
    assert main(["demo", "--out", str(tmp_path / "a.mp4")]) == 1
    monkeypatch.setattr(videoforge.bundled, "bundled_model_dir", lambda: tiny_model_dir)
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out)]) == 0  # what `make demo` runs
    frames, _ = read_video(out)
    assert frames.shape == (5, 32, 48, 3)  # the bundled folder's own defaults
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert (sidecar["prompt"], sidecar["seed"]) == ("a red circle moving to the right", 0)
    assert out.with_suffix(".gif").is_file()


def test_flash_backend_without_flash_attn_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    from videoforge.models.attention import flash_attn_available, get_attention_backend

    if flash_attn_available():
        pytest.skip("flash-attn is installed here")
    rc = main(["generate", "--prompt", "x", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path / "a.mp4"),
               "--attention", "flash", "--quiet"])
    assert rc == 1 and "needs the flash-attn package" in capsys.readouterr().err
    assert get_attention_backend() == "sdpa"


def test_generate_image_to_video(tiny_i2v_model_dir, tmp_path):
    import cv2
    import numpy as np

    image = np.zeros((300, 600, 3), np.uint8)  # 1:2 -> the 32x64 bucket at base 64
    image[:, 200:400] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "ref.png"), image)
    out = tmp_path / "i2v.mp4"
    base = ["generate", "--image", str(tmp_path / "ref.png"), "--prompt", "the square slides", "--model-dir",
            str(tiny_i2v_model_dir), "--i2v-resolution", "64", "--quiet", "--seed", "2"]
    assert main(base + ["--out", str(out)]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (5, 32, 64, 3) and fps == 8
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert (sidecar["height"], sidecar["width"], sidecar["flow_shift"], sidecar["stability"]) == (32, 64, 17.0, False)
    assert sidecar["image"] == str(tmp_path / "ref.png") and sidecar["resolution"] == "64"
    assert main(base + ["--size", "32x32", "--out", str(tmp_path / "b.mp4")]) == 1
    assert main(base + ["--i2v-resolution", "1000p", "--out", str(tmp_path / "b.mp4")]) == 1
    assert main(base[:2] + [str(tmp_path / "nope.png")] + base[3:] + ["--out", str(tmp_path / "c.mp4")]) == 1
