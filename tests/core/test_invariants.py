"""The invariants of DESIGN.md sections 1-2, on every supported denoiser layout."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

import mtu
from mtu.layers import MTUFeedForward, TaskInputConv, TaskLayerNorm
from tests.core.tiny_models import CASES, Case, output_of, relative_error
from tests.helpers import TASKS, perturb


def task_sample(model: mtu.MTUModel, task: str, latent: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """The noisy latent followed by random conditioning channels, as many as `task` takes."""
    extra = model.task_in_channels(task) - latent.shape[1]
    condition = torch.randn(latent.shape[0], extra, *latent.shape[2:], generator=torch.Generator().manual_seed(seed))
    return torch.cat([latent, condition], dim=1)


def run(model, case: Case, sample: torch.Tensor, **task_kwargs) -> torch.Tensor:
    args, kwargs = case.inputs(sample)
    with torch.no_grad():
        return output_of(model(*args, **kwargs, **task_kwargs))


@pytest.fixture(params=CASES, ids=lambda case: case.name)
def case(request) -> Case:
    return request.param


def latent_for(base, batch: int = 2) -> torch.Tensor:
    size = base.config.sample_size
    return torch.randn(batch, 4, size, size, generator=torch.Generator().manual_seed(7))


def test_upcycled_model_reproduces_base_for_every_task(case: Case):
    base = case.build()
    latent = latent_for(base)
    expected = run(base, case, latent)
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    for task in TASKS:
        actual = run(model, case, task_sample(model, task, latent), task=task)
        assert relative_error(actual, expected) <= 1e-5, task


def test_structure_replaces_every_ffn_and_keeps_parameter_count_close(case: Case):
    base = case.build()
    base_ffn_count = sum(1 for name, _ in base.named_modules() if name.endswith("ff") or name.endswith("ff_context"))
    base_params = sum(p.numel() for p in base.parameters())
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=2))
    layers = [m for m in model.modules() if isinstance(m, MTUFeedForward)]
    assert len(layers) == base_ffn_count > 0
    assert sum(isinstance(m, TaskInputConv) for m in model.modules()) == 1
    assert any(isinstance(m, TaskLayerNorm) for m in model.modules()) == case.has_task_norms
    expert_params = sum(p.numel() for layer in layers for p in layer.base_layer.parameters())
    base_ffn_params = sum(
        p.numel() for name, m in base.named_modules() if name.endswith(("ff", "ff_context")) for p in m.parameters()
    )
    assert expert_params == base_ffn_params
    report = model.parameter_report()
    assert report.total == sum(report.components.values()) == sum(p.numel() for p in model.parameters())
    assert report.components["frozen (base)"] == base_params - base_ffn_params - sum(
        p.numel()
        for m in base.modules()
        for p in m.parameters(recurse=False)
        if m is getattr(base, "conv_in", None) or m is getattr(getattr(base, "pos_embed", None), "proj", None)
    ) - (sum(p.numel() for m in model.modules() if isinstance(m, TaskLayerNorm) for p in m.parameters()) // len(TASKS))


def test_export_equals_mtu_output_after_training(case: Case):
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    perturb(model)
    latent = latent_for(model.base_model)
    for task in TASKS:
        sample = task_sample(model, task, latent)
        expected = run(model, case, sample, task=task)
        exported = model.export(task).eval()
        assert type(exported) is type(model.base_model)
        assert exported.config.in_channels == sample.shape[1]
        assert not any(isinstance(m, (MTUFeedForward, TaskLayerNorm, TaskInputConv)) for m in exported.modules())
        assert relative_error(run(exported, case, sample), expected) <= 1e-5, task


def test_mixed_task_batch_equals_per_task_runs_stacked(case: Case):
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    perturb(model)
    latent = latent_for(model.base_model, batch=5)
    # Different channel counts in one batch: zero-padded to the largest (inpaint's).
    samples = [task_sample(model, task, latent[i : i + 1], seed=i) for i, task in enumerate(TASKS)]
    args, kwargs = case.inputs(mtu.concat_task_inputs(samples))
    with torch.no_grad():
        mixed = output_of(model(*args, **kwargs, task=TASKS))
    for i, (task, (row_args, row_kwargs)) in enumerate(zip(TASKS, rows_alone(args, kwargs, samples))):
        with torch.no_grad():
            single = output_of(model(*row_args, **row_kwargs, task=task))
        assert relative_error(mixed[i : i + 1], single) <= 1e-5, task


def rows_alone(args: tuple, kwargs: dict, samples: list[torch.Tensor]) -> list[tuple[tuple, dict]]:
    """Each row of a mixed batch's inputs as a batch of one, with its own unpadded sample in place of the padded one."""
    rows = []
    for i, sample in enumerate(samples):
        row_args, row_kwargs = _row(args, kwargs, i)
        row_args = (sample, *row_args[1:]) if row_args else row_args
        if "hidden_states" in row_kwargs:
            row_kwargs["hidden_states"] = sample
        rows.append((row_args, row_kwargs))
    return rows


def _row(args: tuple, kwargs: dict, i: int) -> tuple[tuple, dict]:
    """Slice every batched tensor (including nested dicts) to sample i."""

    def pick(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value[i : i + 1]
        if isinstance(value, dict):
            return {key: pick(item) for key, item in value.items()}
        return value

    return tuple(pick(a) for a in args), {key: pick(v) for key, v in kwargs.items()}


def test_same_channel_tasks_batch_as_one_tensor_with_task_ids():
    case = CASES[0]
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    perturb(model)
    sample = task_sample(model, "edit", latent_for(model.base_model, batch=3))
    by_name = run(model, case, sample, task=["edit", "sr", "remove"])
    by_id = run(model, case, sample, task=torch.tensor([1, 2, 3]))
    assert torch.equal(by_name, by_id)
    args, kwargs = _row(*case.inputs(sample), 1)
    with torch.no_grad():
        single = output_of(model(*args, **kwargs, task="sr"))
    assert relative_error(by_name[1:2], single) <= 1e-5


def test_save_then_load_on_fresh_base_is_bit_exact(case: Case, tmp_path):
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=2))
    perturb(model)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mtu_config.json", "mtu_model.safetensors"]
    restored = mtu.load(case.build(), tmp_path)
    latent = latent_for(model.base_model)
    for task in ("t2i", "inpaint"):
        sample = task_sample(model, task, latent)
        assert torch.equal(run(restored, case, sample, task=task), run(model, case, sample, task=task))


def test_saved_weights_hold_only_mtu_parameters(tmp_path):
    from safetensors.torch import load_file

    model = mtu.upcycle(CASES[0].build(), mtu.MTUConfig(tasks=["t2i", "edit"], num_experts=2))
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "mtu_model.safetensors")
    trainable = {name.removeprefix("base_model.") for name, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == trainable


def test_gradients_reach_only_mtu_parameters(case: Case):
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    perturb(model)  # so the zero-initialised router layers pass gradient to the task embedding
    latent = latent_for(model.base_model, batch=2)
    sample = task_sample(model, "edit", latent)
    args, kwargs = case.inputs(sample)
    output_of(model(*args, **kwargs, task=["edit", "sr"])).square().mean().backward()
    mtu_types = (MTUFeedForward, TaskLayerNorm, TaskInputConv)
    owned = {id(p) for m in model.modules() if isinstance(m, mtu_types) for p in m.parameters()}
    owned.update(id(p) for p in model.task_embeddings.parameters())
    for name, parameter in model.named_parameters():
        if id(parameter) in owned:
            assert parameter.requires_grad, name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    routed = [m for m in model.modules() if isinstance(m, MTUFeedForward)]
    assert all(m.router.net[-1].weight.grad.abs().sum() > 0 for m in routed)
    assert all(model.task_embeddings[task].grad.abs().sum() > 0 for task in ("edit", "sr"))
    # tasks absent from the batch get no gradient at all, so AdamW leaves their embeddings and moments alone
    assert all(model.task_embeddings[task].grad is None for task in ("t2i", "remove", "inpaint"))


def test_training_steps_change_only_mtu_parameters():
    case = CASES[0]
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sample = task_sample(model, "inpaint", latent_for(model.base_model, batch=2))
    for _ in range(3):
        args, kwargs = case.inputs(sample)
        output_of(model(*args, **kwargs, task="inpaint")).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert any("router" in name for name in changed)


def test_gradient_checkpointing_gives_the_same_gradients():
    case = CASES[0]
    grads = []
    for checkpointing in (False, True):
        model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
        perturb(model)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        sample = task_sample(model, "edit", latent_for(model.base_model, batch=2))
        args, kwargs = case.inputs(sample)
        output_of(model(*args, **kwargs, task=["edit", "sr"])).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7)


def test_exported_folder_loads_in_stock_diffusers(tmp_path):
    case = CASES[0]
    model = mtu.upcycle(case.build(), mtu.MTUConfig(tasks=TASKS, num_experts=4))
    perturb(model)
    model.export("inpaint").save_pretrained(tmp_path)
    stock = UNet2DConditionModel.from_pretrained(tmp_path).eval()
    assert stock.config.in_channels == 9
    sample = task_sample(model, "inpaint", latent_for(model.base_model))
    assert relative_error(run(stock, case, sample), run(model, case, sample, task="inpaint")) <= 1e-5


@pytest.mark.parametrize("num_experts", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("channels", [320, 640, 1280])
def test_fused_layer_at_sd15_dimensions(num_experts: int, channels: int):
    """SD1.5's FFNs (GEGLU, d_ff = 4 x channels): identity at init, fold equals the routed layer after."""
    from diffusers.models.attention import FeedForward

    from mtu.layers import TaskContext

    torch.manual_seed(0)
    feedforward = FeedForward(channels, activation_fn="geglu")
    tokens = torch.randn(2, 64, channels)
    expected = feedforward(tokens)
    context = TaskContext()
    layer = MTUFeedForward(feedforward, num_experts, task_embedding_dim=16, router_hidden_dim=16, context=context)
    table = torch.nn.Embedding(2, 16)
    mixed = mtu.layers.TaskBatch.from_ids([0, 1], table.weight, tokens.device)
    embedding = table.weight.detach()
    with torch.no_grad(), context.activate(mixed):
        assert relative_error(layer(tokens), expected) <= 1e-6
        layer.router.net[-1].weight.normal_()
        routed = layer(tokens)
    assert relative_error(routed, expected) > 1e-3 or num_experts == 1
    for row in range(2):
        assert relative_error(layer.fold(embedding[row])(tokens[row : row + 1]), routed[row : row + 1]) <= 1e-5
