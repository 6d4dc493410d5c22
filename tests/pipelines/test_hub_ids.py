"""Hub ids wherever a model is named, resolved through huggingface_hub's cache: offline with a filled cache works."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mtu.cli.main import main
from mtu.pipelines import MTUPipeline
from mtu.sampler import SamplerSettings, save_sampler
from tests.helpers import request_for, save_tiny_sd_pipeline

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache, repo_id: str, folder) -> None:
    """Lay `folder` out as huggingface_hub caches a download of `repo_id` (refs/main -> snapshots/<commit>)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A cache holding a tiny base pipeline "org/tiny-base" and an MTU folder "org/tiny-mtu" made from it."""
    root = tmp_path_factory.mktemp("hub")
    base = save_tiny_sd_pipeline(root / "local-base")
    assert main(["upcycle", "--base", str(base), "--experts", "2", "--out", str(root / "local-mtu")]) == 0
    config = root / "local-mtu" / "mtu_config.json"
    config.write_text(config.read_text().replace(str(base), "org/tiny-base"))  # as if upcycled from the hub id
    save_sampler(root / "local-mtu", {"edit": SamplerSettings("DDIMScheduler", 2, 1.0, 1.5)})
    cache = root / "cache"
    cache_repo(cache, "org/tiny-base", base)
    cache_repo(cache, "org/tiny-mtu", root / "local-mtu")
    return cache


@pytest.fixture
def offline(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def test_from_pretrained_loads_a_hub_id_offline_from_the_cache(offline):
    pipe = MTUPipeline.from_pretrained("org/tiny-mtu")  # its config names its base by hub id too
    assert pipe.unet.mtu_config.base_model_name_or_path == "org/tiny-base"
    assert pipe.samplers["edit"].num_inference_steps == 2  # the stored settings come with it
    local = MTUPipeline.from_pretrained(offline / "models--org--tiny-mtu" / "snapshots" / COMMIT)
    for p in (pipe, local):
        p.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(*(p.run_batch([request_for("edit")], 2, output_type="np")[0] for p in (pipe, local)))
    fresh = MTUPipeline.from_pretrained("org/tiny-base")  # a base pipeline by hub id: upcycled afresh
    assert fresh.unet.mtu_config.base_model_name_or_path == "org/tiny-base"


def test_the_commands_take_hub_ids_offline(offline, tmp_path, capsys):
    assert main(["upcycle", "--base", "org/tiny-base", "--experts", "2", "--out", str(tmp_path / "mtu")]) == 0
    argv = ["generate", "--model", "org/tiny-mtu", "--base", "org/tiny-base", "--task", "t2i", "--steps", "1"]
    assert main([*argv, "--prompt", "a red circle", "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["info", "org/tiny-mtu"]) == 0
    assert "task edit       DDIMScheduler, 2 steps" in capsys.readouterr().out


def test_a_reference_found_nowhere_says_what_was_tried(offline, capsys):
    assert main(["info", "org/not-cached"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "'org/not-cached' is not a local folder or a shipped model name, and as a hub id" in error
    assert f"it is not in {offline} while HF_HUB_OFFLINE is set" in error and "hf download org/not-cached" in error
    with pytest.raises(FileNotFoundError, match=r"neither a local folder nor a shipped model name \(shapes-base"):
        MTUPipeline.from_pretrained("no-such-model")
