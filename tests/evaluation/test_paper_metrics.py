"""The paper's metrics with small random feature networks: the plumbing is real, only weights are stand-ins."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import save_file
from scipy import ndimage
from torch import nn
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

from mtu.cli.main import main
from mtu.evaluation.paper_metrics import (
    ClipFeatures,
    FIDInceptionV3,
    MissingWeightsError,
    clip_score,
    directional_similarity,
    fid,
    find_clip,
    find_inception,
    find_lpips,
    image_similarity,
    load_inception,
    load_lpips,
    lpips,
    psnr,
    ssim,
)
from tests.helpers import tiny_tokenizer, upcycle_tiny_sd_pipeline


class TinyFeatures(nn.Module):
    """uint8 images -> 8 features, the shape of contract FID's custom networks follow."""

    num_features = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, images):
        return torch.relu(self.conv(images.float() / 255)).mean(dim=(2, 3))


def save_tiny_clip(folder):
    tokenizer = tiny_tokenizer(folder / "tokenizer-files", model_max_length=32)
    vocab = len(tokenizer)
    text = dict(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_tiny_lpips(path):
    """AlexNet's `features` layout at 1/16-1/32 width, with its own (non-negative) linear layers."""
    generator = torch.Generator().manual_seed(0)
    shapes = {0: (4, 3, 11, 11), 3: (8, 4, 5, 5), 6: (8, 8, 3, 3), 8: (8, 8, 3, 3), 10: (8, 8, 3, 3)}
    state = {}
    for index, shape in shapes.items():
        fan_in = shape[1] * shape[2] * shape[3]
        state[f"features.{index}.weight"] = torch.randn(shape, generator=generator) / fan_in**0.5
        state[f"features.{index}.bias"] = torch.zeros(shape[0])
    for k, channels in enumerate((4, 8, 8, 8, 8)):
        state[f"lin{k}.model.1.weight"] = torch.rand(1, channels, 1, 1, generator=generator)
    save_file(state, str(path))
    return path


def save_tiny_inception(path):
    """Inception v3 at 1/16 width; batch-norm statistics fitted to random images so features do not vanish."""
    torch.manual_seed(0)
    network = FIDInceptionV3(width_divisor=16)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batch
    nn.Module.train(network, True)  # FIDInceptionV3.train refuses training mode
    with torch.no_grad():
        network(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    save_file(network.eval().state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-networks")
    return {
        "clip": save_tiny_clip(root / "clip"),
        "lpips": save_tiny_lpips(root / "lpips.safetensors"),
        "inception": save_tiny_inception(root / "inception.safetensors"),
    }


def scene(size=64):
    """A picture with edges and flat regions (random images have no structure for blur to remove)."""
    y, x = np.mgrid[:size, :size]
    image = np.stack([x * 4 % 256, y * 4 % 256, ((x // 8 + y // 8) % 2) * 200 + 30], -1).astype(np.float32)
    image[(x - 40) ** 2 + (y - 24) ** 2 < 150] = (230, 40, 40)
    return image


def as_batch(*images):
    return torch.from_numpy(np.stack([np.clip(np.rint(i), 0, 255).astype(np.uint8) for i in images])).permute(
        0, 3, 1, 2
    )


def test_fid_of_a_set_against_itself_is_zero():
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    brighter = (images.int() + 60).clamp(max=255).to(torch.uint8)
    same, shifted = fid(images, images, TinyFeatures()), fid(images, brighter, TinyFeatures())
    assert abs(same) < 1e-4 * shifted
    assert shifted > 0


def test_inception_file_round_trip(networks, tmp_path):
    network = load_inception(networks["inception"])
    assert network.num_features == 128
    images = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    assert network(images).shape == (2, 128)
    broken = {k: v for k, v in network.state_dict().items() if "Mixed_7c" not in k}
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        load_inception(tmp_path / "broken.safetensors")


def test_directional_similarity_flips_sign_with_the_edit_direction(networks):
    clip = ClipFeatures.from_pretrained(networks["clip"])
    generator = torch.Generator().manual_seed(1)
    before = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=generator)
    after = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=generator)
    source, target = ["a red ball", "a cat", "one dog"], ["a blue ball", "a cat with a hat", "two dogs"]
    forward = directional_similarity(clip, before, after, source, target)
    assert abs(forward) > 1e-3
    assert directional_similarity(clip, after, before, source, target) == pytest.approx(-forward, abs=1e-5)
    assert directional_similarity(clip, before, after, target, source) == pytest.approx(-forward, abs=1e-5)
    assert image_similarity(clip, before, before) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= clip_score(clip, after, target) <= 100.0


def test_lpips_psnr_ssim_get_worse_with_more_degradation(networks):
    clean = scene()
    levels = [
        ndimage.gaussian_filter(clean, (s, s, 0)) + np.random.default_rng(0).normal(0, n, clean.shape)
        for s, n in ((0.6, 4), (1.5, 12), (3.0, 30))
    ]
    network = load_lpips(networks["lpips"])
    reference = as_batch(clean)
    scores = [
        (lpips(as_batch(d), reference, network), psnr(as_batch(d), reference), ssim(as_batch(d), reference))
        for d in levels
    ]
    distances, psnrs, ssims = zip(*scores)
    assert list(distances) == sorted(distances) and distances[0] > 0
    assert list(psnrs) == sorted(psnrs, reverse=True)
    assert list(ssims) == sorted(ssims, reverse=True)
    assert lpips(reference, reference, network) == pytest.approx(0.0, abs=1e-6)


def test_missing_weights_name_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    checkpoints = str(tmp_path / "torch-home" / "hub" / "checkpoints")
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth") as inception:
        find_inception()
    assert checkpoints in str(inception.value) and "--inception" in str(inception.value)
    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth") as backbone:
        find_lpips()
    assert checkpoints in str(backbone.value) and "--lpips" in str(backbone.value)
    with pytest.raises(MissingWeightsError, match="no-such-org/no-such-clip.*--clip"):
        find_clip("no-such-org/no-such-clip")
    with pytest.raises(MissingWeightsError, match="--inception .*nowhere.pth does not exist"):
        find_inception(tmp_path / "nowhere.pth")


@pytest.fixture(scope="module")
def mtu_folder(tmp_path_factory):
    return upcycle_tiny_sd_pipeline(tmp_path_factory.mktemp("mtu-eval"))


def write_remove_dataset(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    lines = []
    for index in range(3):
        for name in ("source", "target"):
            PIL.Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(folder / f"{name}{index}.png")
        lines.append(
            json.dumps(
                {
                    "source_image": f"source{index}.png",
                    "target_image": f"target{index}.png",
                    "instruction": "remove the ball",
                    "input_caption": "a ball on grass",
                    "output_caption": "grass",
                }
            )
        )
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def folder_eval(data, task: str, model, *options: str) -> list[str]:
    """The argv of `mtu eval --benchmark folder` on `data` (a .jsonl file or folder)."""
    return ["eval", "--benchmark", "folder", "--data", str(data), "--task", task, "--model", str(model), *options]


def test_mtu_eval_folder_scores_a_tiny_model(mtu_folder, networks, tmp_path, capsys):
    data = write_remove_dataset(tmp_path / "data")
    weights = [f"--{name}={networks[name]}" for name in ("clip", "inception", "lpips")]
    assert main(folder_eval(data, "remove", mtu_folder, "--steps", "2", *weights, "--json")) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_samples"] == 3 and result["resolution"] == 16 and result["skipped"] == {}
    assert set(result["metrics"]) == {"fid", "lpips", "psnr", "ssim", "directional_similarity"}
    assert all(np.isfinite(value) for value in result["metrics"].values())
    assert result["metrics"]["fid"] > 0  # untrained outputs are not the targets


def test_mtu_eval_folder_stops_before_work_when_weights_are_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    data = write_remove_dataset(tmp_path / "data")
    # The model folder does not exist: the weight check must fail first.
    assert main(folder_eval(data, "remove", tmp_path / "absent", "--metrics", "fid,psnr")) == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err


def test_mtu_eval_folder_rejects_records_missing_task_fields(tmp_path, capsys):
    (tmp_path / "data.jsonl").write_text(json.dumps({"input_image": "x.png"}) + "\n")
    assert main(folder_eval(tmp_path / "data.jsonl", "edit", tmp_path / "absent")) == 1
    assert "lacks ['edit_prompt']" in capsys.readouterr().err
