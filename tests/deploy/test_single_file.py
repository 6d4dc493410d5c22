"""Single-file export: the original SD layout, read back by diffusers' own from_single_file exactly."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from safetensors import safe_open

from mtu.assets import resolve_model_path
from mtu.deploy import export_single_file, to_original_layout
from mtu.pipelines import export_pipeline
from tests.helpers import mtu_pipeline, tiny_sdxl_components


def _assert_same_weights(loaded, stock) -> None:
    for name in ("unet", "vae", "text_encoder"):
        expected, actual = getattr(stock, name).state_dict(), getattr(loaded, name).state_dict()
        assert sorted(actual) == sorted(expected), name
        assert all(torch.equal(actual[key], expected[key]) for key in expected), name


@pytest.mark.parametrize("task", ["t2i", "edit", "inpaint"])  # 4-, 8- and 9-channel UNets
def test_from_single_file_loads_the_diffusers_export_back(pipe, tmp_path, task):
    folder = export_pipeline(pipe, task, tmp_path / "diffusers")
    path = export_single_file(pipe, task, tmp_path / f"{task}.safetensors")
    stock = DiffusionPipeline.from_pretrained(folder)
    pipeline_class = StableDiffusionPipeline if task == "t2i" else type(stock)
    loaded = pipeline_class.from_single_file(str(path), config=str(folder), local_files_only=True)
    assert type(loaded) is type(stock)
    _assert_same_weights(loaded, stock)
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
        assert handle.metadata()["mtu_task"] == task
        conv_in = handle.get_tensor("model.diffusion_model.input_blocks.0.0.weight")
        attention = handle.get_tensor("first_stage_model.decoder.mid.attn_1.q.weight")
    assert conv_in.shape[1] == {"t2i": 4, "edit": 8, "inpaint": 9}[task]  # what ComfyUI / A1111 read the layout from
    assert attention.dim() == 4  # a 1x1 conv in the original VAE, a Linear in diffusers
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in keys


def test_the_shipped_model_round_trips(tmp_path):
    """shapes-base has attention in every up block (upsamplers in the other LDM slot) and 4 levels."""
    stock = DiffusionPipeline.from_pretrained(resolve_model_path("shapes-base"))
    state = to_original_layout(stock.unet, stock.vae, stock.text_encoder)  # checked against diffusers inside
    assert "model.diffusion_model.output_blocks.1.2.conv.weight" in state
    from mtu.utils.tensor_files import save_tensors

    save_tensors(tmp_path / "shapes.safetensors", state, {"format": "pt"})
    loaded = StableDiffusionPipeline.from_single_file(
        str(tmp_path / "shapes.safetensors"), config=str(resolve_model_path("shapes-base")), local_files_only=True
    )
    _assert_same_weights(loaded, stock)


def test_refusals(pipe, tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors file"):
        export_single_file(pipe, "t2i", tmp_path / "model.ckpt")
    (tmp_path / "taken.safetensors").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        export_single_file(pipe, "t2i", tmp_path / "taken.safetensors")
    xl = mtu_pipeline(tiny_sdxl_components(tmp_path / "xl"))
    with pytest.raises(ValueError, match="SDXL is not supported"):
        export_single_file(xl, "t2i", tmp_path / "xl.safetensors")
    assert not (tmp_path / "xl.safetensors").exists()
