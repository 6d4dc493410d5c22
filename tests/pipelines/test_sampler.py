"""Sampler settings stored with a model (`mtu.sampler`): read by the pipeline, generate, serve, eval and info."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from mtu.cli.main import main
from mtu.pipelines import MTUPipeline, MTURequest
from mtu.sampler import SAMPLER_NAME, SamplerSettings, load_sampler, save_sampler
from tests.helpers import picture, upcycle_tiny_sd_pipeline

STORED = SamplerSettings("DDIMScheduler", 3, 1.0, 1.5)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny MTU folder whose edit and sr are stored at 3 DDIM steps, guidance 1; t2i at 2 Euler steps."""
    folder = upcycle_tiny_sd_pipeline(tmp_path_factory.mktemp("sampler"))
    euler = SamplerSettings("EulerDiscreteScheduler", 2, 4.0, 1.5)
    save_sampler(folder, {"edit": STORED, "sr": STORED, "t2i": euler})
    return folder


@pytest.fixture(scope="module")
def pipe(folder):
    pipe = MTUPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _edit(pipe, **settings):
    generator = torch.Generator().manual_seed(0)
    return pipe("edit", "make it blue", image=picture(1), generator=generator, output_type="np", **settings).images


def test_stored_settings_are_read_and_bad_files_refused_in_one_line(folder, tmp_path):
    assert load_sampler(folder)["edit"] == STORED and load_sampler(tmp_path) == {}
    for content, message in (
        ("{", "sampler.json: Expecting"),
        ('{"edit": {"steps": 3}}', r"unknown keys \['steps'\]"),
        ('{"edit": {"num_inference_steps": 0}}', "num_inference_steps must be a whole number"),
        ('{"depth": {}}', r"has settings for \['depth'\], which the model does not serve"),
    ):
        (tmp_path / SAMPLER_NAME).write_text(content)
        with pytest.raises(ValueError, match=message):
            load_sampler(tmp_path, ["edit"])


def test_a_call_without_sampler_arguments_uses_the_stored_ones(pipe):
    assert pipe.samplers["edit"] == STORED
    explicit = _edit(pipe, num_inference_steps=3, guidance_scale=1.0, image_guidance_scale=1.5)
    np.testing.assert_array_equal(_edit(pipe), explicit)
    assert not np.allclose(_edit(pipe, num_inference_steps=2), explicit)  # the caller's value wins


def test_a_task_runs_with_its_stored_scheduler_unless_the_caller_set_one(folder):
    pipe = MTUPipeline.from_pretrained(folder)  # tasks name two schedulers: the base's DDIM stays loaded
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.scheduler_name("t2i") == "EulerDiscreteScheduler"
    used = []
    original = EulerDiscreteScheduler.step
    EulerDiscreteScheduler.step = lambda self, *a, **k: used.append(1) or original(self, *a, **k)
    try:
        pipe("t2i", "a red circle", output_type="np")
        assert len(used) == 2 and isinstance(pipe.scheduler, DDIMScheduler)  # 2 stored Euler steps, then restored
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the caller's choice wins
        pipe("t2i", "a red circle", output_type="np")
        assert len(used) == 2 and pipe.scheduler_name("t2i") == "DDIMScheduler"
    finally:
        EulerDiscreteScheduler.step = original
    with pytest.raises(ValueError, match="different step counts"):
        pipe.loop_steps(["t2i", "edit"], None)


def test_a_folder_without_settings_keeps_the_defaults(tmp_path):
    pipe = MTUPipeline.from_pretrained(upcycle_tiny_sd_pipeline(tmp_path))
    assert pipe.samplers == {} and pipe.loop_steps(["edit"], None) == 50
    request = pipe.check_inputs(MTURequest("edit", "x", image=picture(1)))
    assert (request.guidance_scale, request.image_guidance_scale) == (7.5, 1.5)


def test_edit_without_sampler_arguments_is_the_image_mtu_eval_scores(folder, monkeypatch):
    """The acceptance test of issue 28: `pipe("edit", prompt, image=...)` == what `mtu eval` generates."""
    import mtu.evaluation.shapes_eval as shapes_eval
    from mtu.data.shapes.tasks import evaluation_set

    scored, real = {}, shapes_eval.score_outputs

    def keep_outputs(task, outputs, *args):
        scored["outputs"] = outputs
        return real(task, outputs, *args)

    monkeypatch.setattr(shapes_eval, "score_outputs", keep_outputs)
    argv = ["eval", "--model", str(folder), "--task", "edit", "--num-samples", "1", "--device", "cpu", "--json"]
    assert main(argv) == 0
    example = evaluation_set("edit", 1, 0)[0]
    pipe = MTUPipeline.from_pretrained(folder)
    generator = torch.Generator().manual_seed(0)  # mtu eval seeds example i of seed s with s * 1_000_003 + i
    image = pipe("edit", example.prompt, image=PIL.Image.fromarray(example.image), generator=generator)
    np.testing.assert_allclose(np.asarray(image.images[0]) / 255, scored["outputs"][0], atol=1 / 255 + 1e-6)


def test_generate_serve_and_info_use_the_stored_settings(folder, pipe, capsys, monkeypatch):
    from mtu.serve import ChatService, Settings

    calls = []
    monkeypatch.setattr(MTUPipeline, "__call__", lambda self, *a, **k: calls.append(k) or _Images())
    picture(2, size=4).save(folder.parent / "small.png")
    argv = ["generate", "--model", str(folder), "--task", "sr", "--image", str(folder.parent / "small.png")]
    assert main([*argv, "--out", str(folder.parent / "out"), "--guidance", "2"]) == 0
    assert {k: calls[-1][k] for k in ("num_inference_steps", "guidance_scale")} == {
        "num_inference_steps": 3,
        "guidance_scale": 2.0,
    }
    service = ChatService(pipe)
    assert service.settings_for("edit") == Settings(3, 1.0, 1.5)
    assert service.settings_for("remove") == Settings(25, 1.0, 1.5)  # none stored: the Shapes sampler
    assert service.settings_for("edit", Settings(steps=2)).steps == 2
    capsys.readouterr()
    assert main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sampler"]["edit"]["num_inference_steps"] == 3
    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "task edit       DDIMScheduler, 3 steps, guidance 1, image guidance 1.5" in text
    assert "task remove     none stored" in text


class _Images:
    images = []


def test_add_task_keeps_the_old_tasks_stored_settings(folder, tmp_path):
    assert main(["add-task", "--model", str(folder), "--task", "colorize", "--out", str(tmp_path / "more")]) == 0
    assert load_sampler(tmp_path / "more", ["t2i", "edit", "sr", "remove", "inpaint", "colorize"]) == load_sampler(
        folder
    )
