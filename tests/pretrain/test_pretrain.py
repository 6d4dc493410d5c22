"""The shapes-base recipe: tokenizer, a tiny end-to-end run, resume, export, and the shipped folder."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file
from transformers import CLIPTokenizer

from mtu.assets import SHAPES_BASE_SAMPLER, resolve_model_path
from mtu.cli.main import main
from mtu.data.shapes import caption, sample_scene, vocabulary
from mtu.pretrain import TINY_SIZES, ModelSizes, build_tokenizer, export_run, pretrain_shapes, save_tokenizer
from mtu.pretrain.checkpoint import latest_checkpoint
from mtu.pretrain.evaluate import record_rerun
from mtu.pretrain.loop import Stage, StepBudget, StopRequest, lr_at, run_steps

TINY_RUN = {
    "sizes": TINY_SIZES,
    "vae_steps": 2,
    "unet_steps": 4,
    "vae_batch_size": 2,
    "batch_size": 2,
    "checkpoint_every": 2,
    "export_every": 2,
    "eval_scenes": 4,
}


@pytest.fixture(autouse=True)
def _restore_threads():
    # The recipe sets torch's thread count (a process-wide setting).
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    summary = pretrain_shapes(root / "run", TINY_RUN, export_to=root / "export")
    return root, summary


def _generate(folder, steps: int = 2) -> np.ndarray:
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    generator = torch.Generator().manual_seed(0)
    prompt = "a red circle at the top left, on a gray background"
    guidance = SHAPES_BASE_SAMPLER["guidance_scale"]
    output = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=generator, output_type="np")
    return output.images


def test_every_vocabulary_word_is_one_token_and_survives_save_load(tmp_path):
    tokenizer = build_tokenizer(vocabulary(), max_length=40)
    save_tokenizer(tokenizer, tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    for word in vocabulary():
        assert len(loaded.tokenize(word)) == 1, word
    text = "a red circle at the top left, on a gray background"
    assert loaded(text).input_ids == tokenizer(text).input_ids
    assert loaded.model_max_length == 40

    # CLIP's own files alone (no tokenizer.json) give the same tokenizer.
    clip_only = tmp_path / "clip_files"
    clip_only.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (clip_only / name).write_bytes((tmp_path / name).read_bytes())
    assert CLIPTokenizer.from_pretrained(clip_only)(text).input_ids == tokenizer(text).input_ids


def test_unknown_words_fall_back_to_bytes_not_unk():
    tokenizer = build_tokenizer(vocabulary(), max_length=40)
    ids = tokenizer("a zebra 42!").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a zebra 4 2 !"


def test_three_object_captions_fit_the_default_max_length():
    tokenizer = build_tokenizer(vocabulary(), max_length=ModelSizes().max_length)
    rng = np.random.default_rng(0)
    longest = max(len(tokenizer(caption(sample_scene(rng, 3), rng)).input_ids) for _ in range(300))
    assert longest <= tokenizer.model_max_length


def test_words_the_pretokenizer_splits_are_rejected():
    with pytest.raises(ValueError, match="cannot be single CLIP tokens"):
        build_tokenizer(["red", "x2"], max_length=16)


def test_tiny_run_exports_a_folder_stock_diffusers_loads_and_samples(tiny_run):
    root, summary = tiny_run
    assert summary == {"stage": "unet", "step": 4, "finished": True, "vae_psnr_db": summary["vae_psnr_db"]}
    images = _generate(root / "export")
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()
    info = json.loads((root / "export" / "pretrain_info.json").read_text())
    assert info["unet_step"] == 4
    assert "shapes-base" in (root / "export" / "README.md").read_text()


def test_resume_continues_at_the_checkpointed_step_and_matches_an_uninterrupted_run(tmp_path, tiny_run):
    run = tmp_path / "run"
    # 2 VAE steps + 1 UNet step, then stop: the checkpoint is at UNet step 1.
    stopped = pretrain_shapes(run, TINY_RUN, stop_after=3)
    assert stopped == {"stage": "unet", "step": 1, "finished": False, "vae_psnr_db": stopped["vae_psnr_db"]}
    assert latest_checkpoint(run).name == "1-unet-0000001"
    resumed = pretrain_shapes(run, resume=True)
    assert resumed["step"] == 4 and resumed["finished"]
    first = load_file(latest_checkpoint(tiny_run[0] / "run") / "tensors.safetensors")
    second = load_file(latest_checkpoint(run) / "tensors.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_existing_run_needs_resume_and_resume_needs_a_run(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="--resume"):
        pretrain_shapes(tiny_run[0] / "run", TINY_RUN)
    with pytest.raises(FileNotFoundError, match="holds no run"):
        pretrain_shapes(tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="cannot change sizes"):
        pretrain_shapes(tiny_run[0] / "run", {"sizes": ModelSizes()}, resume=True)


def test_cli_export_only_writes_the_latest_checkpoint(tmp_path, tiny_run):
    dest = tmp_path / "exported"
    assert main(["pretrain-shapes", "--out", str(tiny_run[0] / "run"), "--export-only", "--export-to", str(dest)]) == 0
    assert json.loads((dest / "pretrain_info.json").read_text())["unet_step"] == 4
    assert export_run(tiny_run[0] / "run", dest) == dest


def test_shipped_shapes_base_loads_in_stock_diffusers_and_generates():
    try:
        folder = resolve_model_path("shapes-base")
    except FileNotFoundError:
        pytest.skip("the shapes-base weights have not been exported yet (mtu pretrain-shapes --export-to ...)")
    images = _generate(folder)
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()


def test_sigterm_checkpoints_the_current_step_and_stops(tmp_path):
    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    stage = Stage("vae", {"vae": module}, optimizer, torch.Generator().manual_seed(0))

    def train_step(batch) -> dict:
        loss = module(torch.ones(1, 2)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if stage.step == 2:  # counted before the loop increments it: this is the 3rd step
            os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": float(loss.detach())}

    with StopRequest() as stop:
        finished = run_steps(stage, 10, lambda step: 1e-3, range(10), train_step, tmp_path, 100, stop, StepBudget())
    assert not finished
    assert latest_checkpoint(tmp_path).name == "0-vae-0000003"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_lr_warms_up_then_decays_to_the_final_fraction():
    assert lr_at(0, 100, 1.0, 10, 0.05) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10, 0.05) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10, 0.05) == pytest.approx(0.05)


def test_data_workers_render_the_same_batches_as_the_training_process():
    from mtu.pretrain.data import SceneBatches, step_batches

    dataset = SceneBatches(
        seed=0,
        stage_index=2,
        batch_size=3,
        num_steps=6,
        caption_dropout=0.5,
        tokenizer=build_tokenizer(vocabulary(), max_length=40),
    )
    inline = list(step_batches(dataset, first_step=2, workers=0))
    parallel = list(step_batches(dataset, first_step=2, workers=2))
    assert len(inline) == len(parallel) == 4
    for (images_a, ids_a), (images_b, ids_b) in zip(inline, parallel):
        assert torch.equal(images_a, images_b) and torch.equal(ids_a, ids_b)
    assert not torch.equal(inline[0][0], inline[1][0])  # each step draws new scenes


def test_time_limit_checkpoints_and_exports_then_resume_finishes(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    stopped = pretrain_shapes(run, {**TINY_RUN, "export_every": 100}, time_limit=0.0, export_to=export)
    assert stopped["step"] == 1 and not stopped["finished"]  # one VAE step, then the deadline
    resumed = pretrain_shapes(run, resume=True, time_limit=None, export_to=export)
    assert resumed["finished"]
    info = json.loads((export / "pretrain_info.json").read_text())
    assert info["unet_step"] == 4 and info["unet_seconds_total"] > 0 and "CPU" in info["unet_hardware"]


def test_evaluate_writes_measured_figures_into_the_card(tmp_path, tiny_run):
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(tiny_run[0] / "export", folder)
    assert "Not measured yet" in (folder / "README.md").read_text()
    assert main(["pretrain-shapes", "--export-to", str(folder), "--evaluate", "--eval-samples", "3"]) == 0
    info = json.loads((folder / "pretrain_info.json").read_text())
    vae, t2i = info["evaluation"]["vae"], info["evaluation"]["t2i"]
    assert vae["num_scenes"] == 3 and 0 <= vae["parser"]["all_correct"] <= 1 and vae["psnr_db"] > 0
    assert t2i["num_images"] == 3 and set(t2i["by_num_objects"]) <= {"1", "2", "3"}
    card = (folder / "README.md").read_text()
    assert f"PSNR **{vae['psnr_db']:.2f} dB**" in card and "| all | 3 |" in card


def test_record_rerun_files_an_evaluated_rerun_in_the_card_and_rejects_other_recipes(tmp_path, tiny_run):
    import shutil

    folders = {}
    for name, seed in (("shipped", 0), ("rerun", 1)):
        folders[name] = tmp_path / name
        shutil.copytree(tiny_run[0] / "export", folders[name])
        info_path = folders[name] / "pretrain_info.json"
        info = json.loads(info_path.read_text())
        info["config"]["seed"] = seed
        info_path.write_text(json.dumps(info))
    record = ["pretrain-shapes", "--export-to", str(folders["shipped"]), "--record-rerun", str(folders["rerun"])]
    assert main(record) != 0  # neither folder is evaluated yet: nothing to compare
    for folder in folders.values():
        assert main(["pretrain-shapes", "--export-to", str(folder), "--evaluate", "--eval-samples", "3"]) == 0
    assert main(record) == 0
    assert main(record) == 0  # the same re-run filed twice replaces itself
    info = json.loads((folders["shipped"] / "pretrain_info.json").read_text())
    rerun = json.loads((folders["rerun"] / "pretrain_info.json").read_text())["evaluation"]
    assert [r["seed"] for r in info["reruns"]] == [1]
    assert info["reruns"][0]["vae_psnr_db"] == rerun["vae"]["psnr_db"]
    card = (folders["shipped"] / "README.md").read_text()
    assert "### Re-runs of the recipe" in card and "| re-run | 1 |" in card and "| this folder | 0 |" in card

    info_path = folders["rerun"] / "pretrain_info.json"
    other = json.loads(info_path.read_text())
    other["config"]["lr"] *= 2
    info_path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        record_rerun(folders["shipped"], folders["rerun"])


def test_evaluate_without_an_export_folder_names_the_fix(capsys):
    assert main(["pretrain-shapes", "--evaluate"]) != 0
    assert "--evaluate and --record-rerun need --export-to DIR" in capsys.readouterr().err


def test_asking_for_a_gpu_without_one_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cpu"):
        pretrain_shapes(tmp_path / "run", TINY_RUN, device="cuda")
    assert not (tmp_path / "run").exists()  # nothing written
