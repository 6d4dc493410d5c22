"""The one loader: every command on an MTU folder, a base pipeline folder and a LoRA run (issue 14).

Each kind of model goes through `mtu.loading` / `MTUPipeline.from_pretrained`; what a command cannot do for
a kind (exporting a LoRA run, adding a task to one) is refused in one line before anything loads.
"""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import UNet2DConditionModel

import mtu
from mtu.cli.main import main
from mtu.loading import inspect_model
from mtu.pipelines import MTUPipeline, MTURequest
from mtu.training import TrainConfig, train
from tests.helpers import save_tiny_sd_pipeline
from tests.training.conftest import config_dict

KINDS = ("mtu", "base", "lora")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{kind: folder}: a tiny base pipeline, its `mtu upcycle` folder and a 1-step LoRA run on it (t2i, edit)."""
    root = tmp_path_factory.mktemp("loader")
    base = save_tiny_sd_pipeline(root / "base")
    argv = ["upcycle", "--base", str(base), "--tasks", "t2i,edit", "--experts", "2", "--out", str(root / "mtu")]
    assert main(argv) == 0
    data = config_dict(base, root / "lora-run", tasks=("t2i", "edit"), method="lora", train={"max_steps": 1})
    lora = train(TrainConfig.from_dict(data))["model"]
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "in.png")
    return {"mtu": root / "mtu", "base": base, "lora": lora, "root": root}


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mtu {command}: error: "), err
    return err[0]


def test_each_kind_is_recognised_without_loading_weights(models):
    assert [inspect_model(models[kind]).kind for kind in KINDS] == ["mtu", "base", "run"]
    lora = inspect_model(models["lora"])
    assert lora.method == "lora" and lora.label == "a lora run" and not lora.mixes_tasks and not lora.has_experts
    assert inspect_model("shapes-base").kind == "base"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_generate(models, kind, task, capsys):
    out = models["root"] / "out" / kind
    image = ["--image", str(models["root"] / "in.png")] if task == "edit" else []
    argv = ["generate", "--model", str(models[kind]), "--task", task, "--steps", "1", "--out", str(out), *image]
    assert main([*argv, "--prompt", "make it blue", "--overwrite"]) == 0
    assert PIL.Image.open(out / f"{task}-0-0.png").size == (16, 16)


@pytest.mark.parametrize("kind", ["mtu", "base"])
def test_export(models, kind):
    out = models["root"] / f"export-{kind}"
    assert main(["export", "--model", str(models[kind]), "--task", "edit", "--out", str(out)]) == 0
    assert json.loads((out / "unet" / "config.json").read_text())["in_channels"] == 8


@pytest.mark.parametrize("fmt", ["diffusers", "onnx", "single-file"])
def test_export_refuses_a_lora_run_in_one_line(models, capsys, fmt):
    out = models["root"] / f"never-{fmt}"
    assert main(["export", "--model", str(models["lora"]), "--task", "edit", "--format", fmt, "--out", str(out)]) == 1
    message = one_line_error(capsys, "export")
    assert "is a lora run: its per-task adapters do not fold into one stock denoiser" in message
    assert not out.exists()


def test_export_in_python_refuses_a_lora_model_too(models):  # MTUModel.export, under every exporter
    from mtu.pipelines import export_pipeline

    with pytest.raises(ValueError, match="per-task adapters \\(lora / ia3\\) do not fold"):
        export_pipeline(MTUPipeline.from_pretrained(models["lora"]), "edit", models["root"] / "never-python")


def test_add_task_refuses_a_lora_run_and_a_base_pipeline(models, capsys):
    for kind, expected in (("lora", "is a lora run, which has no experts"), ("base", "is a base pipeline")):
        out = models["root"] / f"never-{kind}"
        assert main(["add-task", "--model", str(models[kind]), "--task", "colorize", "--out", str(out)]) == 1
        assert expected in one_line_error(capsys, "add-task")


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("mtu", ["MTU model: 2 experts per FFN", "task edit", "trainable"]),
        ("base", ["pipeline: StableDiffusionPipeline", "unet"]),
        ("lora", ["LoRA baseline", "trained with `mtu train`", "task edit", "trained"]),
    ],
)
def test_info(models, capsys, kind, expected):
    assert main(["info", str(models[kind])]) == 0
    out = capsys.readouterr().out
    assert all(text in out for text in expected), out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", ["t2i", "edit"])
def test_eval(models, capsys, kind, task):
    capsys.readouterr()
    argv = ["eval", "--model", str(models[kind]), "--task", task, "--num-samples", "2", "--steps", "1", "--json"]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == task and metrics["num_samples"] == 2


def test_eval_refuses_a_task_the_model_does_not_serve(models, capsys):
    assert main(["eval", "--model", str(models["lora"]), "--task", "sr", "--num-samples", "1"]) == 1
    assert "does not serve task 'sr'; it serves ['t2i', 'edit']" in one_line_error(capsys, "eval")


@pytest.mark.parametrize("kind", KINDS)
def test_the_servers_loader(models, kind):
    from mtu.serve import load_pipeline

    pipe, name = load_pipeline(str(models[kind]))
    assert isinstance(pipe, MTUPipeline) and pipe.mixes_tasks == (kind != "lora")
    assert name.endswith("(upcycled, untrained)") == (kind == "base")
    assert set(pipe.unet.task_names) >= {"t2i", "edit"}


def test_a_lora_run_serves_one_task_per_loop_through_that_tasks_adapter(models):
    pipe = MTUPipeline.from_pretrained(models["lora"])
    pipe.set_progress_bar_config(disable=True)
    image = PIL.Image.open(models["root"] / "in.png")

    def request(task, seed=0):
        inputs = {"image": image} if task == "edit" else {}
        return MTURequest(task, "a red circle", generator=torch.Generator().manual_seed(seed), **inputs)

    with pytest.raises(ValueError, match="serve one task per denoising loop, got \\['edit', 't2i'\\]"):
        pipe.run_batch([request("t2i"), request("edit")], 1)
    first = pipe.run_batch([request("t2i")], 1, output_type="np")[0]
    pipe.run_batch([request("edit")], 1)  # switches to edit's adapter ...
    np.testing.assert_array_equal(pipe.run_batch([request("t2i")], 1, output_type="np")[0], first)  # ... and back


def test_the_server_batches_a_lora_run_by_task(models):
    from mtu.serve import BatchWorker, load_pipeline

    pipe, _ = load_pipeline(str(models["lora"]))
    calls, original = [], pipe.run_batch

    def spy(batch, steps):
        calls.append(sorted({request.task for request in batch}))
        return original(batch, steps, output_type="np")

    pipe.run_batch = spy
    image = PIL.Image.open(models["root"] / "in.png")
    with BatchWorker(pipe, max_batch=4, batch_wait_s=2) as worker:
        futures = [worker.submit(MTURequest("t2i", "a circle"), 1), worker.submit(MTURequest("edit", image=image), 1)]
        results = [future.result(timeout=120) for future in futures]
    assert sorted(calls) == [["edit"], ["t2i"]] and [r.batch_tasks for r in results] == [("t2i",), ("edit",)]


def test_mtu_load_takes_mtu_folders_and_runs_and_refuses_a_base(models):
    def unet():
        return UNet2DConditionModel.from_pretrained(models["base"] / "unet")

    assert mtu.load(unet(), models["mtu"]).task_names == ["t2i", "edit"]
    loaded = mtu.load(unet(), models["lora"])
    assert not loaded.training and any("lora_A" in name for name, _ in loaded.named_parameters())
    with pytest.raises(ValueError, match="is a base pipeline, not an MTU folder"):
        mtu.load(unet(), models["base"])


def test_from_pretrained_refusals(models):
    with pytest.raises(ValueError, match="is an MTU folder, not a base pipeline: a config upcycles a base"):
        MTUPipeline.from_pretrained(models["mtu"], config=mtu.MTUConfig(tasks=["t2i"]))
    with pytest.raises(ValueError, match="is a base pipeline itself: base= applies to MTU folders and runs"):
        MTUPipeline.from_pretrained(models["base"], base=models["base"])
    fresh = MTUPipeline.from_pretrained(models["base"], config=mtu.MTUConfig(tasks=["t2i", "sr"], num_experts=2))
    assert fresh.unet.task_names == ["t2i", "sr"] and fresh.unet.mtu_config.base_model_name_or_path == str(
        models["base"]
    )
