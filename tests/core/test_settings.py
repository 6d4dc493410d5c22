"""Issue 31: one validator for request settings (`mtu.utils.limits.check_settings`), the same answer on every surface:
the command line, `MTUPipeline.__call__`, stored sampler settings and the server (tests/serve/test_service.py)."""

from __future__ import annotations

import math

import pytest
from diffusers import DDIMScheduler

from mtu.cli.main import main
from mtu.sampler import SamplerSettings
from mtu.utils.limits import PIPELINE_NAMES, check_settings, scheduler_max_steps, shown
from tests.helpers import mtu_pipeline, tiny_sd_components, upcycle_tiny_sd_pipeline

BAD = [
    ("steps", 0, "must be a whole number from 1 to 1000"),
    ("steps", 2.5, "must be a whole number from 1 to 1000, got 2.5"),
    ("steps", True, "must be a whole number"),
    ("steps", 10**6, "must be a whole number from 1 to 1000"),
    ("guidance", math.nan, "must be a number from 0 to 30, got nan"),
    ("guidance", math.inf, "must be a number from 0 to 30, got inf"),
    ("guidance", -5, "must be a number from 0 to 30, got -5"),
    ("image_guidance", -1.0, "must be a number from 0 to 30"),
    ("seed", -1, r"must be a whole number from 0 to 2\*\*63 - 1"),
    ("seed", 2**64, "must be a whole number"),
    ("num_images", 65, "must be a whole number from 1 to 64"),
    ("threads", 0, "must be a whole number from 1 to 4096, got 0"),
    ("steps", "3", "must be a whole number"),
]


@pytest.mark.parametrize("key, value, message", BAD)
def test_bad_settings_are_refused_naming_the_option(key, value, message):
    option = "--" + key.replace("_", "-")
    with pytest.raises(ValueError, match=f"^{option} {message}"):
        check_settings(**{key: value})


def test_good_settings_are_converted_and_none_is_left_to_the_default():
    checked = check_settings(steps=25.0, guidance=7, image_guidance=None, seed=2**63 - 1)
    assert checked == {"steps": 25, "guidance": 7.0, "image_guidance": None, "seed": 2**63 - 1}
    assert type(checked["steps"]) is int and type(checked["guidance"]) is float
    assert check_settings(max_steps=10, steps=10) == {"steps": 10}
    with pytest.raises(ValueError, match="--steps must be a whole number from 1 to 10"):
        check_settings(max_steps=10, steps=11)


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return mtu_pipeline(tiny_sd_components(tmp_path_factory.mktemp("settings")), tasks=["t2i"])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("steps", 2.5, "whole number"),
        ("guidance", math.inf, "from 0 to 30"),
        ("image_guidance", -1, "from 0 to 30"),
        ("num_images", 0, "from 1 to 64"),
    ],
)
def test_the_pipeline_refuses_the_same_values_by_its_own_names(pipe, key, value, message):
    name = PIPELINE_NAMES[key]
    with pytest.raises(ValueError, match=f"^{name} must be a .*{message}"):
        pipe("t2i", "a red circle", **{"num_inference_steps": 1, name: value})
    with pytest.raises(ValueError, match=f"^{name} must be a .*{message}"):
        SamplerSettings(**{name: value}) if key != "num_images" else check_settings(PIPELINE_NAMES, num_images=value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--threads", "0", "info", "shapes-base"], "mtu info: error: --threads must be a whole number from 1"),
        (["train", "x.yaml", "--threads", "-2"], "mtu train: error: --threads must be a whole number from 1"),
        (["eval", "--model", "x", "--guidance", "inf"], "mtu eval: error: --guidance must be a number from 0 to 30"),
        (["eval", "--model", "x", "--image-guidance", "-1"], "mtu eval: error: --image-guidance must be a number"),
        (["serve", "--max-steps", "100000"], "mtu serve: error: --max-steps must be a whole number from 1 to 1000"),
        (["serve", "--timeout", "inf"], "mtu serve: error: --timeout must be a number from 0.001 to 86400, got inf"),
    ],
)
def test_the_command_line_refuses_before_loading(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_help_states_the_ranges(capsys):
    for command, ranges in (("eval", ["1 to 1000", "0 to 30", "2**63 - 1"]), ("serve", ["1-1000", "1-65535"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(expected in text for expected in ranges), (command, text)


def test_steps_are_bounded_by_what_the_models_scheduler_can_take(pipe):
    """The tiny models' DDIM ("leading" spacing, steps_offset 1) cannot take 1000 steps: `mtu generate --steps 1000`
    was an IndexError ("index 1000 is out of bounds") reported as unexpected (issue 31)."""
    assert scheduler_max_steps(pipe.scheduler)[0] == 999
    pipe.scheduler.set_timesteps(999)  # the bound is exact: 999 steps stay within the training timesteps
    assert int(pipe.scheduler.timesteps.max()) == 999
    trailing = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")  # adds no offset
    assert scheduler_max_steps(trailing) == (1000, "DDIMScheduler: 1000 training timesteps")
    with pytest.raises(ValueError, match=r"^num_inference_steps 1000 is more than this model's scheduler can take: "):
        pipe("t2i", "a red circle", num_inference_steps=1000)


def test_generate_names_the_schedulers_step_limit_in_one_line(tmp_path, capsys):
    model = upcycle_tiny_sd_pipeline(tmp_path)
    argv = ["generate", "--model", str(model), "--task", "t2i", "--steps", "1000", "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mtu generate: error: --steps 1000 is more than this model's scheduler can take")
    assert err[-1].endswith("at most 999 (DDIMScheduler: 1000 training timesteps, steps_offset 1)")
    assert "unexpected" not in err[-1] and not (tmp_path / "out").exists()


def test_refusals_quote_long_values_cut_short():
    """A 309-digit seed (1e308 through the demo page's number box) was repeated whole in the refusal (issue 31)."""
    with pytest.raises(ValueError) as refused:
        check_settings(seed=10**308)
    expected = f"--seed must be a whole number from 0 to 2**63 - 1, got 1{'0' * 56}... (309 characters)"
    assert str(refused.value) == expected
    assert shown("x" * 1000).endswith("... (1002 characters)") and shown(2.5) == "2.5"
