"""MTUConfig round-trips, and every bad input gets a ValueError that names the problem and the fix."""

from __future__ import annotations

import json

import pytest
import torch

import mtu
from mtu import MTUConfig, TaskSpec
from tests.core.tiny_models import CASES, tiny_sd_unet

TASKS = ["t2i", "edit", "sr", "remove", "inpaint"]


def test_config_round_trips_through_json(tmp_path):
    config = MTUConfig(
        tasks=[
            "t2i",
            "edit",
            TaskSpec("depth", extra_channels=1, description="depth"),
            {"name": "sketch", "extra_channels": 3},
        ],
        num_experts=8,
        router_hidden_dim=32,
        task_embedding_dim=16,
        target_modules=[r"down_blocks\..*"],
    )
    config.save(tmp_path / "mtu_config.json")
    data = json.loads((tmp_path / "mtu_config.json").read_text())
    assert data["mtu_version"] == mtu.__version__
    assert MTUConfig.load(tmp_path) == config
    assert MTUConfig.load(tmp_path).tasks[2] == TaskSpec("depth", "custom", 1, "depth")


def test_default_config_serves_the_five_builtin_tasks():
    config = MTUConfig()
    assert config.task_names == TASKS
    assert [t.input_channels(4) for t in config.tasks] == [4, 8, 8, 8, 9]
    assert [t.input_channels(16) for t in config.tasks] == [16, 32, 32, 32, 33]  # SD3-style latents


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": ["t2i", "depth2img"]}, "unknown task 'depth2img'; built-in tasks are"),
        ({"tasks": ["t2i", "t2i"]}, "repeated: ['t2i']"),
        ({"tasks": []}, "at least one task"),
        ({"tasks": [{"name": "x", "channels": 3}]}, "unknown keys ['channels']"),
        ({"num_experts": 0}, "num_experts must be a positive int"),
        ({"num_experts": 2.0}, "num_experts must be a positive int"),
        ({"router_hidden_dim": -1}, "router_hidden_dim must be a positive int"),
    ],
)
def test_bad_config_values_are_named(kwargs, message):
    with pytest.raises(ValueError) as error:
        MTUConfig(**kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["déblur", "еdit", "x" * 33, "2x", "", "a-b", None])
def test_task_names_are_short_ascii_identifiers(name):  # issue 31
    with pytest.raises(ValueError, match="must be an ASCII identifier .* of at most 32 characters"):
        TaskSpec(name, "image")


def test_a_name_equal_after_nfkc_normalisation_is_the_same_name():  # issue 31: full-width letters
    assert TaskSpec("\uff54\uff12\uff49", "none").name == "t2i" and TaskSpec("x" * 32, "none").name == "x" * 32
    with pytest.raises(ValueError, match=r"task names must be unique; repeated: \['t2i'\]"):
        MTUConfig(tasks=["t2i", {"name": "\uff54\uff12\uff49", "conditioning": "none"}])
    model = mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i"], num_experts=2))
    with pytest.raises(ValueError, match="this model already serves 't2i'"):
        model.add_task(TaskSpec("\uff54\uff12\uff49", "image"))


def test_task_fields_of_the_wrong_type_are_value_errors():  # issue 31's fuzzer: a list is unhashable
    for task, message in [
        ({"name": ["t2i"], "conditioning": "none"}, "must be an ASCII identifier"),
        ({"name": "x", "conditioning": ["image"]}, "conditioning \\['image'\\] is not one of"),
        ({"name": "x", "conditioning": "none", "prompt": ["required"]}, "prompt \\['required'\\] is not one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            MTUConfig(tasks=[task])


def test_bad_task_specs():
    with pytest.raises(ValueError, match="must be an ASCII identifier"):
        TaskSpec("my task", extra_channels=1)
    with pytest.raises(ValueError, match="a custom task needs extra_channels, an int >= 0, got -1"):
        TaskSpec("depth", extra_channels=-1)
    with pytest.raises(ValueError, match="conditioning 'video' is not one of"):
        TaskSpec("clip", "video")
    with pytest.raises(ValueError, match="extra_channels is set by conditioning='image'"):
        TaskSpec("edit2", "image", extra_channels=4)
    with pytest.raises(ValueError, match="upscale must be an int >= 1, got 0"):
        TaskSpec("sr2", "image", upscale=0)
    with pytest.raises(ValueError, match="upscale=2 needs conditioning='image'"):
        TaskSpec("sr2", "masked_image", upscale=2)
    with pytest.raises(ValueError, match="prompt 'maybe' is not one of"):
        TaskSpec("sr2", "image", prompt="maybe")


def test_a_builtin_task_saved_before_upscale_and_prompt_keeps_its_behaviour(tmp_path):
    config = MTUConfig(tasks=["t2i", "sr", TaskSpec("sr2", "image", upscale=2, prompt="optional")])
    data = config.to_dict()
    for task in data["tasks"]:  # the layout of a folder saved by an older mtu
        del task["upscale"], task["prompt"]
    loaded = MTUConfig.from_dict(data).tasks
    assert loaded[:2] == config.tasks[:2] and (loaded[1].upscale, loaded[1].prompt) == (4, "optional")
    assert (loaded[2].upscale, loaded[2].prompt) == (1, "required")  # a task of the user's: the defaults


def test_a_builtin_task_saved_before_phrases_keeps_them_and_phrases_round_trip(tmp_path):
    config = MTUConfig(tasks=["edit", TaskSpec("depth", "image", phrases=["depth map"])])
    data = config.to_dict()
    del data["tasks"][0]["phrases"]  # a folder saved by an older mtu
    loaded = MTUConfig.from_dict(json.loads(json.dumps(data))).tasks
    assert loaded == config.tasks and loaded[1].phrases == ("depth map",) and hash(loaded[1])
    with pytest.raises(ValueError, match="phrase '\\(' is no regular expression"):
        TaskSpec("bad", "image", phrases=["("])


def test_custom_task_gets_its_own_channel_count():
    model = mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i", {"name": "depth", "extra_channels": 1}]))
    assert model.task_in_channels("depth") == 5
    output = model(torch.randn(1, 5, 8, 8), 10, torch.randn(1, 5, 16), task="depth").sample
    assert output.shape == (1, 4, 8, 8)


def test_unknown_config_keys_are_reported(tmp_path):
    (tmp_path / "mtu_config.json").write_text(json.dumps({"tasks": ["t2i"], "experts": 4}))
    with pytest.raises(ValueError, match=r"unknown MTUConfig keys \['experts'\]"):
        MTUConfig.load(tmp_path)


def test_num_experts_not_dividing_the_ffn_lists_valid_choices():
    unet = tiny_sd_unet()  # d_ff = 32 and 64
    before = {name: p.clone() for name, p in unet.named_parameters()}
    with pytest.raises(ValueError, match=r"num_experts=3 does not divide .*valid choices: \[1, 2, 4, 8, 16, 32\]"):
        mtu.upcycle(unet, MTUConfig(num_experts=3))
    # Checked before touching the model: nothing was replaced.
    assert {name for name, _ in unet.named_parameters()} == set(before)


def test_no_matching_targets_and_double_upcycle_are_refused():
    with pytest.raises(ValueError, match="no FeedForward matched target_modules"):
        mtu.upcycle(tiny_sd_unet(), MTUConfig(target_modules=["nothing"]))
    model = mtu.upcycle(tiny_sd_unet(), MTUConfig())
    with pytest.raises(ValueError, match="already upcycled"):
        mtu.upcycle(model.base_model, MTUConfig())


def test_target_modules_select_a_subset():
    model = mtu.upcycle(tiny_sd_unet(), MTUConfig(target_modules=[r"down_blocks\..*"]))
    routed = [name for name in model.routing_weights()]
    assert routed and all(name.startswith("down_blocks.") for name in routed)


@pytest.fixture
def model() -> mtu.MTUModel:
    return mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=TASKS))


def call(model, channels: int = 4, batch: int = 2, text_batch: int | None = None, **task):
    sample = torch.randn(batch, channels, 8, 8)
    text = torch.randn(text_batch or batch, 5, 16)
    return model(sample, torch.tensor(10), text, **task)


def test_unknown_task_lists_the_model_tasks(model):
    with pytest.raises(
        ValueError, match=r"unknown task 'upscale'; this model serves \['t2i', 'edit', 'sr', 'remove', 'inpaint'\]"
    ):
        call(model, task="upscale")


def test_missing_task_is_explained(model):
    with pytest.raises(ValueError, match="pass task=... to the MTU model"):
        call(model)


def test_wrong_channel_count_names_the_expected_count(model):
    with pytest.raises(ValueError, match=r"the input has 4 channels but \{'edit': 8\} expects 8"):
        call(model, channels=4, task="edit")
    with pytest.raises(ValueError, match=r"expects 9 \(a mixed batch is zero-padded to the largest"):
        call(model, channels=8, task=["edit", "inpaint"])


def test_task_list_length_must_match_the_batch(model):
    with pytest.raises(ValueError, match="got 3 tasks for a batch of 2 samples.*classifier-free guidance"):
        call(model, channels=8, task=["edit", "sr", "edit"])


def test_task_ids_out_of_range_or_not_integer(model):
    with pytest.raises(ValueError, match=r"task ids \[7\] out of range: valid ids are 0..4"):
        call(model, channels=8, task=torch.tensor([1, 7]))
    with pytest.raises(ValueError, match=r"task ids \[-1\] out of range"):
        call(model, channels=8, task=[1, -1])
    with pytest.raises(ValueError, match="1-D integer tensor"):
        call(model, channels=8, task=torch.tensor([1.0, 2.0]))


def test_mismatched_batch_sizes_are_named(model):
    with pytest.raises(ValueError, match="encoder_hidden_states has batch size 3 but the sample has 2"):
        call(model, text_batch=3, task="t2i")


def test_calling_the_base_model_directly_explains_how_to_call(model):
    with pytest.raises(RuntimeError, match=r"call the MTUModel \(model\(..., task=...\)\)"):
        model.base_model(torch.randn(1, 4, 8, 8), 10, torch.randn(1, 5, 16))


def test_batch_chunked_feedforward_is_refused_for_mixed_batches(model):
    from diffusers.models.attention import BasicTransformerBlock

    for block in model.modules():
        if isinstance(block, BasicTransformerBlock):
            block.set_chunk_feed_forward(chunk_size=1, dim=0)
    call(model, channels=8, task="edit")  # one task: any chunking is fine
    with pytest.raises(ValueError, match=r"enable_forward_chunking\(dim=0\)"):
        call(model, channels=8, task=["edit", "sr"])


def test_load_refuses_pickle_unless_allowed(tmp_path):
    source = mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i", "edit"]))
    source.save_pretrained(tmp_path)
    state = {k: v.clone() for k, v in source.mtu_state_dict().items()}
    (tmp_path / "mtu_model.safetensors").unlink()
    torch.save(state, tmp_path / "mtu_model.bin")
    with pytest.raises(ValueError, match="pickle file, which can run code.*allow_pickle=True"):
        mtu.load(tiny_sd_unet(), tmp_path)
    restored = mtu.load(tiny_sd_unet(), tmp_path, allow_pickle=True)
    assert all(torch.equal(restored.task_embeddings[t], source.task_embeddings[t]) for t in source.task_names)


def test_load_checks_the_base_class_and_missing_files(tmp_path):
    mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i"])).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="was upcycled from a UNet2DConditionModel.*not a PixArtTransformer2DModel"):
        mtu.load(CASES[2].build(), tmp_path)
    with pytest.raises(FileNotFoundError, match="is neither a local folder nor a shipped model name"):
        mtu.load(tiny_sd_unet(), tmp_path / "missing")


def test_load_rejects_weights_from_another_config(tmp_path):
    mtu.upcycle(tiny_sd_unet(), MTUConfig(tasks=["t2i", "edit"], num_experts=2)).save_pretrained(tmp_path)
    config = MTUConfig.load(tmp_path)
    config.tasks = config.tasks[:1]
    config.save(tmp_path / "mtu_config.json")
    with pytest.raises(ValueError, match="does not match its mtu_config.json: the weights hold embeddings of tasks"):
        mtu.load(tiny_sd_unet(), tmp_path)  # from the header, before the model is built (issue 31)


def test_routing_weights_are_uniform_at_init(model):
    weights = model.routing_weights()
    assert weights and all(torch.allclose(w, torch.full_like(w, 1 / 4)) for w in weights.values())
    assert all(w.shape == (5, 4) for w in weights.values())


def test_parameter_report_prints_every_component(model):
    text = str(model.parameter_report())
    for component in ("experts (FFN)", "routers", "task_embeddings", "task_norms", "task_input_layers", "trainable"):
        assert component in text
