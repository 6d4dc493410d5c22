"""Shapes metrics, the t2i evaluation loop and the `mtu eval` command on a tiny random pipeline."""

import argparse
import json

import numpy as np
import pytest

from mtu.data.shapes.tasks import evaluation_set
from mtu.data.shapes.world import Scene, ShapeObject, render, sample_scene
from mtu.evaluation.shapes_metrics import PSNR_CAP, match_objects, pair_metrics, t2i_accuracy

RATE_KEYS = {"background", "color", "shape", "position", "count", "all_correct"}


def _scenes(num, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(num)]


def test_ground_truth_scores_perfectly():
    scenes = _scenes(60)
    metrics = t2i_accuracy([render(scene) for scene in scenes], scenes)
    assert {key: metrics[key] for key in RATE_KEYS} == dict.fromkeys(RATE_KEYS, 1.0)
    assert metrics["num_images"] == 60
    assert set(metrics["by_num_objects"]) == {"1", "2", "3"}
    assert sum(group["num_images"] for group in metrics["by_num_objects"].values()) == 60
    assert all(group["all_correct"] == 1.0 for group in metrics["by_num_objects"].values())


def test_wrong_colour_drops_colour_accuracy_only():
    scene = Scene("gray", (ShapeObject("circle", "red", "top left"), ShapeObject("square", "blue", "center")))
    wrong = Scene("gray", (ShapeObject("circle", "green", "top left"), ShapeObject("square", "blue", "center")))
    metrics = t2i_accuracy([render(wrong)], [scene])
    assert metrics["color"] == 0.5 and metrics["all_correct"] == 0.0
    assert metrics["shape"] == metrics["position"] == metrics["background"] == metrics["count"] == 1.0


def test_misplaced_object_keeps_colour_and_shape_credit():
    expected = Scene("white", (ShapeObject("triangle", "red", "top"),))
    predicted = Scene("white", (ShapeObject("triangle", "red", "bottom"),))
    ((true, found),) = match_objects(predicted, expected)
    assert found == predicted.objects[0]
    metrics = t2i_accuracy([render(predicted)], [expected])
    assert metrics["color"] == metrics["shape"] == 1.0 and metrics["position"] == 0.0


def test_missing_object_scores_zero_and_empty_image_is_handled():
    scene = Scene("black", (ShapeObject("circle", "yellow", "right"),))
    metrics = t2i_accuracy([render(Scene("black", ()))], [scene])
    assert metrics["color"] == metrics["shape"] == metrics["position"] == metrics["count"] == 0.0
    assert metrics["background"] == 1.0


def test_pair_metrics_of_targets_are_perfect_and_psnr_ordering_is_sane():
    examples = evaluation_set("remove", 8, seed=0)
    targets = [e.target for e in examples]
    scenes = [e.target_scene for e in examples]
    perfect = pair_metrics(targets, targets, scenes, "remove")
    assert perfect["psnr"] == PSNR_CAP and perfect["ssim"] == pytest.approx(1.0)  # exact: capped, not infinite
    assert perfect["all_correct"] == perfect["background"] == 1.0
    rng = np.random.default_rng(0)
    noisy = {
        sigma: [np.clip(t + rng.normal(0, sigma, t.shape), 0, 255).astype(np.uint8) for t in targets]
        for sigma in (2, 10, 40)
    }
    results = {sigma: pair_metrics(images, targets, scenes, "remove") for sigma, images in noisy.items()}
    assert results[2]["psnr"] > results[10]["psnr"] > results[40]["psnr"]
    assert results[2]["ssim"] > results[10]["ssim"] > results[40]["ssim"]
    # The unedited input fails the removal: attribute accuracy against the target drops.
    inputs = pair_metrics([e.image for e in examples], targets, scenes, "remove")
    assert inputs["count"] == 0.0 and inputs["psnr"] < results[2]["psnr"]


def test_pair_metrics_accepts_float_outputs_and_validates():
    example = evaluation_set("sr", 1, seed=0)[0]
    floats = [example.target.astype(np.float32) / 255]
    assert pair_metrics(floats, [example.target], [example.target_scene], "sr")["psnr"] > 50
    with pytest.raises(ValueError, match="unknown task 'upscale'"):
        pair_metrics(floats, [example.target], [example.target_scene], "upscale")
    with pytest.raises(ValueError, match="differ in shape"):
        pair_metrics([example.image], [example.target], [example.target_scene], "sr")
    with pytest.raises(ValueError, match="equal length"):
        t2i_accuracy([example.target], [])


# --- evaluation loop and CLI on a tiny random Stable Diffusion folder ---------------------------------


@pytest.fixture(scope="module")
def tiny_pipeline_dir(tmp_path_factory):
    from tests.helpers import save_tiny_sd_pipeline

    return save_tiny_sd_pipeline(tmp_path_factory.mktemp("tiny-sd"))


def _run_cli(argv):
    from mtu.cli import eval as eval_command

    parser = argparse.ArgumentParser(prog="mtu")
    eval_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_eval_cli_prints_metrics_json(tiny_pipeline_dir, capsys):
    argv = ["eval", "--benchmark", "shapes", "--task", "t2i", "--model", str(tiny_pipeline_dir), "--seed", "0"]
    argv += ["--num-samples", "4", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--json"]
    assert _run_cli(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert RATE_KEYS | {"num_images", "by_num_objects", "num_samples", "seed", "sampler", "task", "model"} <= set(
        metrics
    )
    assert metrics["num_images"] == metrics["num_samples"] == 4
    assert metrics["sampler"] == {"num_inference_steps": 2, "guidance_scale": 1.0}
    assert all(0.0 <= metrics[key] <= 1.0 for key in RATE_KEYS if metrics[key] is not None)


def test_a_base_model_scores_as_its_stock_pipeline_and_reproducibly(tiny_pipeline_dir):
    from diffusers import StableDiffusionPipeline

    from mtu.evaluation.shapes_eval import evaluate_shapes, evaluate_t2i

    stock = StableDiffusionPipeline.from_pretrained(
        tiny_pipeline_dir, safety_checker=None, requires_safety_checker=False
    )
    sampler = {"num_inference_steps": 2, "guidance_scale": 1.0}
    expected = evaluate_t2i(stock, 4, seed=3, batch_size=2, **sampler)
    assert expected == evaluate_t2i(stock, 4, seed=3, batch_size=2, **sampler)
    # Through the one loader: the base upcycled afresh, scored as its model card scores it.
    loaded = evaluate_shapes(tiny_pipeline_dir, "t2i", 4, seed=3, batch_size=2, device="cpu", **sampler)
    assert {key: loaded[key] for key in expected} == expected


def test_image_tasks_of_a_base_model_score_its_fresh_upcycle(tiny_pipeline_dir, tmp_path, capsys):
    from mtu.cli.main import main

    assert main(["upcycle", "--base", str(tiny_pipeline_dir), "--out", str(tmp_path / "mtu")]) == 0
    capsys.readouterr()
    argv = ["eval", "--task", "edit", "--num-samples", "2", "--steps", "1", "--json", "--model"]
    scores = []
    for model in (tiny_pipeline_dir, tmp_path / "mtu"):
        assert main([*argv, str(model)]) == 0
        scores.append({k: v for k, v in json.loads(capsys.readouterr().out).items() if k != "model"})
    assert scores[0] == scores[1]  # untrained, the routers are uniform whatever the task embeddings


@pytest.mark.parametrize("task", ["t2i", "edit", "inpaint"])
def test_eval_cli_scores_mtu_tasks(tiny_pipeline_dir, tmp_path, capsys, task):
    from mtu.cli.main import main

    assert main(["upcycle", "--base", str(tiny_pipeline_dir), "--out", str(tmp_path / "mtu")]) == 0
    capsys.readouterr()
    argv = ["eval", "--task", task, "--model", str(tmp_path / "mtu"), "--num-samples", "3", "--steps", "2", "--json"]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == task and metrics["num_samples"] == 3
    expected = {"all_correct", "color"} | ({"by_num_objects"} if task == "t2i" else {"psnr", "ssim"})
    assert expected <= set(metrics)


def test_eval_is_a_registered_command():
    from mtu.cli import main

    assert "eval" in main.COMMAND_MODULES
