"""Adding a task to a trained MTU model (DESIGN.md section 5): the tasks it served do not change, at all."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import mtu
from mtu.layers import TaskInputConv, TaskLayerNorm
from mtu.training.methods import train_only
from tests.core.test_invariants import latent_for, rows_alone, run, task_sample
from tests.core.tiny_models import CASES, Case, output_of, relative_error, tiny_sd_unet
from tests.helpers import perturb

OLD = ["t2i", "edit", "sr", "remove"]


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request) -> Case:
    return request.param


def trained_model(build, num_experts: int = 2, scale: float = 0.1) -> mtu.MTUModel:
    """A 4-task model whose every trainable weight has moved, as training would move it."""
    model = mtu.upcycle(build(), mtu.MTUConfig(tasks=OLD, num_experts=num_experts))
    perturb(model, scale=scale)
    return model


def outputs(model, case: Case, latent: torch.Tensor, tasks) -> dict[str, torch.Tensor]:
    """Each task alone, and all of them in one mixed batch (zero-padded to the widest input)."""
    found = {task: run(model, case, task_sample(model, task, latent), task=task) for task in tasks}
    mixed = mtu.concat_task_inputs([task_sample(model, task, latent) for task in tasks])
    found["mixed"] = run(model, case, mixed, task=[task for task in tasks for _ in range(latent.shape[0])])
    return found


def train_new_task(
    model, case: Case, latent: torch.Tensor, task: str, steps: int = 3, mixed_with: str = "edit"
) -> None:
    """A few AdamW steps (weight decay on) of `task` alone, on batches that also hold an old task's samples."""
    train_only(model, [task])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    sample = mtu.concat_task_inputs([task_sample(model, task, latent), task_sample(model, mixed_with, latent)])
    tasks = [task] * latent.shape[0] + [mixed_with] * latent.shape[0]
    model.train()
    for _ in range(steps):
        args, kwargs = case.inputs(sample)
        output_of(model(*args, **kwargs, task=tasks)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def test_old_tasks_stay_bit_identical_while_the_new_task_trains(case: Case):
    model = trained_model(case.build)
    latent = latent_for(model.base_model)
    before = outputs(model, case, latent, OLD)
    weights = {key: value.detach().clone() for key, value in model.mtu_state_dict().items()}
    model.add_task("colorize")
    assert model.task_names == [*OLD, "colorize"] and model.task_in_channels("colorize") == 8
    fresh = run(model, case, task_sample(model, "colorize", latent), task="colorize")
    train_new_task(model, case, latent, "colorize")
    after = outputs(model, case, latent, OLD)
    for name in before:
        assert torch.equal(after[name], before[name]), name
    state = model.mtu_state_dict()
    assert all(torch.equal(state[key], value) for key, value in weights.items())
    new_keys = set(state) - set(weights)
    assert new_keys and all("colorize" in key for key in new_keys)
    assert not torch.equal(run(model, case, task_sample(model, "colorize", latent), task="colorize"), fresh)


def test_the_new_task_trains_alone_under_gradient_checkpointing():
    case = CASES[0]
    model = trained_model(case.build)
    model.enable_gradient_checkpointing()
    latent = latent_for(model.base_model)
    before = outputs(model, case, latent, OLD)
    model.add_task("colorize")
    embedding = model.task_embeddings["colorize"].detach().clone()
    train_new_task(model, case, latent, "colorize", steps=2)
    after = outputs(model, case, latent, OLD)
    assert all(torch.equal(after[name], before[name]) for name in before)
    assert not torch.equal(model.task_embeddings["colorize"], embedding)


def test_the_new_task_starts_from_the_base_layers_not_a_trained_task():
    base = tiny_sd_unet()
    model = trained_model(tiny_sd_unet)
    model.add_task("colorize")
    conv = model.input_conv.convs["colorize"]
    assert torch.equal(conv.weight[:, :4], base.conv_in.weight) and torch.equal(conv.bias, base.conv_in.bias)
    assert conv.weight[:, 4:].abs().sum() == 0
    assert not torch.equal(model.input_conv.convs["edit"].weight[:, :4], base.conv_in.weight)  # perturbed
    norms = [(name, m) for name, m in model.base_model.named_modules() if isinstance(m, TaskLayerNorm)]
    assert norms
    for name, module in norms:
        original = base.get_submodule(name)
        assert torch.equal(module.norms["colorize"].weight, original.weight)
        assert torch.equal(module.norms["colorize"].bias, original.bias)
    trainable = {id(p) for p in model.task_parameters("colorize")}
    assert all(p.requires_grad for p in model.task_parameters("colorize"))
    assert len(trainable) == 1 + 2 + 2 * len(norms)  # embedding, conv weight + bias, each norm's weight + bias


def test_new_task_batches_with_the_others_and_exports(case: Case):
    model = trained_model(case.build)
    model.add_task("colorize")
    perturb(model, seed=3)  # the new task trained too
    latent = latent_for(model.base_model, batch=3)
    tasks = ["t2i", "colorize", "edit"]
    samples = [task_sample(model, task, latent[i : i + 1], seed=i) for i, task in enumerate(tasks)]
    args, kwargs = case.inputs(mtu.concat_task_inputs(samples))
    with torch.no_grad():
        mixed = output_of(model(*args, **kwargs, task=tasks))
    exported = model.export("colorize").eval()
    for i, (task, (row_args, row_kwargs)) in enumerate(zip(tasks, rows_alone(args, kwargs, samples))):
        with torch.no_grad():
            single = output_of(model(*row_args, **row_kwargs, task=task))
            if task == "colorize":
                assert relative_error(output_of(exported(*row_args, **row_kwargs)), single) <= 1e-5
        assert relative_error(mixed[i : i + 1], single) <= 1e-5, task


def test_save_and_load_after_adding_a_task(tmp_path):
    case = CASES[0]
    model = trained_model(tiny_sd_unet)
    model.add_task({"name": "depth2img", "conditioning": "image"})
    perturb(model, seed=4)
    model.save_pretrained(tmp_path)
    restored = mtu.load(tiny_sd_unet(), tmp_path)
    assert restored.task_names == [*OLD, "depth2img"]
    latent = latent_for(model.base_model)
    for task in restored.task_names:
        sample = task_sample(model, task, latent)
        assert torch.equal(run(restored, case, sample, task=task), run(model, case, sample, task=task)), task


def test_folders_saved_with_one_embedding_table_still_load(tmp_path):
    """Before per-task parameters, one nn.Embedding was saved as `task_embedding.weight` (T, E)."""
    case = CASES[0]
    model = trained_model(tiny_sd_unet)
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "mtu_model.safetensors")
    rows = [tensors.pop(f"task_embeddings.{task}") for task in OLD]
    save_file({**tensors, "task_embedding.weight": torch.stack(rows)}, tmp_path / "mtu_model.safetensors")
    restored = mtu.load(tiny_sd_unet(), tmp_path)
    latent = latent_for(model.base_model)
    for task in OLD:
        sample = task_sample(model, task, latent)
        assert torch.equal(run(restored, case, sample, task=task), run(model, case, sample, task=task)), task
    save_file({**tensors, "task_embedding.weight": torch.stack(rows[:3])}, tmp_path / "mtu_model.safetensors")
    with pytest.raises(ValueError, match=r"task_embedding.weight is \(3, 64\), the config asks for \(4, 64\)"):
        mtu.load(tiny_sd_unet(), tmp_path)


def test_add_task_refuses_what_it_cannot_add():
    model = trained_model(tiny_sd_unet)
    before = {key: value.clone() for key, value in model.mtu_state_dict().items()}
    with pytest.raises(ValueError, match="already serves 'edit'"):
        model.add_task("edit")
    with pytest.raises(ValueError, match="unknown task 'depth2img'; built-in tasks are"):
        model.add_task("depth2img")
    with pytest.raises(ValueError, match="conditioning 'rgb' is not one of"):
        model.add_task({"name": "depth2img", "conditioning": "rgb"})
    assert model.task_names == OLD and model.mtu_state_dict().keys() == before.keys()
    assert all(
        len(m.task_names) == 4 for m in model.base_model.modules() if isinstance(m, (TaskInputConv, TaskLayerNorm))
    )


def test_shapes_base_upcycled_trained_and_extended_keeps_its_four_tasks():
    """The acceptance check on the shipped model: 4 tasks, moved weights, colorize added and trained."""
    from diffusers import UNet2DConditionModel

    from mtu.assets import SHIPPED_MODELS

    folder = SHIPPED_MODELS["shapes-base"] / "unet"
    if not (folder / "diffusion_pytorch_model.safetensors").is_file():
        pytest.skip("the shapes-base weights are not in this checkout")

    def inputs(sample: torch.Tensor, generator: torch.Generator) -> tuple[tuple, dict]:
        batch = sample.shape[0]
        timestep = torch.randint(0, 1000, (batch,), generator=generator)
        return (sample, timestep, torch.randn(batch, 8, 128, generator=generator)), {}

    case = Case("shapes-base", lambda: UNet2DConditionModel.from_pretrained(folder).eval(), inputs, True)
    model = trained_model(case.build, num_experts=4, scale=0.01)
    latent = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(7))
    before = outputs(model, case, latent, OLD)
    assert all(torch.isfinite(value).all() for value in before.values())
    model.add_task("colorize")
    fresh = run(model, case, task_sample(model, "colorize", latent), task="colorize")
    train_new_task(model, case, latent, "colorize", steps=2, mixed_with="sr")
    after = outputs(model, case, latent, OLD)
    assert all(torch.equal(after[name], before[name]) for name in before)
    assert not torch.equal(run(model, case, task_sample(model, "colorize", latent), task="colorize"), fresh)
