"""Fuzz the command line (issue 31): random bad values for its numeric options, damaged model folders for `mtu info`.

    python -m tests.fuzz.fuzz_cli --seconds 300 --seed 7     # by hand; tests/fuzz/test_fuzz.py runs ~20 s in CI

Everything runs in-process through `mtu.cli.main.main`. The work a command starts once it has accepted its
settings is stubbed to raise `Reached`, so a case costs milliseconds, and the oracle is simple: a command that
got that far must have been given only values inside their documented range (`OPTIONS`). A case fails when
- anything but argparse's usage exit (2) escapes `main`, or stderr shows a traceback or an "unexpected" error;
- the command accepted a value that is not finite or outside its range: the "exit 0 with a non-finite
  setting" of issue 31 (`--guidance inf` wrote an all-black PNG).
`mtu info` runs for real on copies of a tiny MTU folder with a random part of it damaged; it must answer, or
refuse in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtu.utils.limits import MAX_IMAGES, MAX_PORT, MAX_SEED, MAX_STEPS, MAX_THREADS, WAIT_S

NO_LIMIT = None
# command -> option -> (argparse type, lowest, highest): what a command that went on to its work must have had.
OPTIONS = {
    "generate": {
        "--steps": (int, 1, MAX_STEPS),
        "--guidance": (float, 0, 30),
        "--image-guidance": (float, 0, 30),
        "--num-images": (int, 1, MAX_IMAGES),
        "--seed": (int, 0, MAX_SEED),
    },
    "eval": {
        "--steps": (int, 1, MAX_STEPS),
        "--guidance": (float, 0, 30),
        "--image-guidance": (float, 0, 30),
        "--seed": (int, 0, MAX_SEED),
        "--num-samples": (int, 1, NO_LIMIT),
        "--batch-size": (int, 1, MAX_IMAGES),
    },
    "serve": {
        "--port": (int, 1, MAX_PORT),
        "--max-batch": (int, 1, MAX_IMAGES),
        "--max-queue": (int, 1, NO_LIMIT),
        "--max-steps": (int, 1, MAX_STEPS),
        "--timeout": (float, *WAIT_S),
    },
    "quickstart": {"--steps": (int, 1, NO_LIMIT), "--eval-samples": (int, 1, NO_LIMIT), "--seed": (int, 0, MAX_SEED)},
    "upcycle": {
        "--experts": (int, 1, 1024),
        "--router-hidden-dim": (int, 1, 65536),
        "--task-embedding-dim": (int, 1, 65536),
    },
    "train": {
        "--max-steps": (int, 1, NO_LIMIT),
        "--checkpoint-every": (int, 1, NO_LIMIT),
        "--seed": (int, 0, MAX_SEED),
        "--stop-after": (int, 1, NO_LIMIT),
        "--threads": (int, 1, MAX_THREADS),
    },
}
GLOBAL = {"--threads": (int, 1, MAX_THREADS)}
# Values people type by mistake, and what breaks parsers: signs, exponents, non-finite, huge, odd digits.
SPECIAL = [
    *("0", "-0", "-1", "1", "2.5", "1e3", "1e-320", "nan", "NaN", "inf", "-inf", "1e309", "-1e309"),
    *("9" * 30, "-" + "9" * 30, str(2**63), str(2**64), str(-(2**63) - 1), "", " ", "abc", "0x10", "1_000"),
    *("\uff11\uff10", "\u0663", "True", "None", "65536", "65535", "1001", "1000", "64", "65", "30", "30.0001"),
    *("86401", "0.0001"),
]


class Reached(Exception):
    """Raised by the stubbed work: the command accepted every value it was given."""


@dataclass
class Report:
    cases: int = 0
    reached: int = 0  # option cases whose command went on to its work
    folders: int = 0  # damaged folders given to mtu info
    failures: list[str] = field(default_factory=list)

    def summary(self, seed: int) -> str:
        return (
            f"seed {seed}: {self.cases} cases ({self.reached} accepted, {self.folders} damaged folders), "
            f"{len(self.failures)} failures"
        )


def random_value(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(SPECIAL)
    if roll < 0.7:
        return str(rng.choice([-1, 1]) * int(10 ** rng.uniform(0, 22)))
    return repr(rng.choice([-1, 1]) * 10 ** rng.uniform(-10, 12))


def in_range(kind: type, text: str, low: float, high: float | None) -> bool:
    """Whether argparse's `kind(text)` is a finite value in [low, high] (what a command may go on with)."""
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        return False
    return math.isfinite(value) and value >= low and (high is None or value <= high)


@contextlib.contextmanager
def stubbed_work():
    """Each fuzzed command's work (loading a model, serving, training) replaced by raising `Reached`."""
    import mtu.cli.eval
    import mtu.cli.generate
    import mtu.quickstart
    import mtu.serve
    import mtu.training
    import mtu.utils.threads
    from mtu.pipelines import MTUPipeline

    def reached(*args, **kwargs):
        raise Reached

    targets = [
        (mtu.cli.generate, "load_pipeline"),
        (mtu.cli.eval, "run_shapes"),
        (mtu.serve, "serve"),
        (mtu.quickstart, "quickstart"),
        (mtu.training, "train"),
    ]
    patched = [*targets, (mtu.utils.threads, "configure_threads")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in patched]
    try:
        for owner, name in targets:
            setattr(owner, name, reached)
        # main still checks --threads; applying 4096 would leave this process (the test session) with them,
        # and choosing a count samples /proc/stat for 0.25 s
        mtu.utils.threads.configure_threads = lambda requested: requested
        MTUPipeline.from_pretrained = classmethod(reached)  # mtu upcycle's base model; the mixin's stays below
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        del MTUPipeline.from_pretrained


def run_main(argv: list[str]) -> tuple[int | str, str]:
    """(exit code, or "reached" / the escaped exception's name; stderr) of one in-process `mtu` call."""
    from mtu.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code: int | str = main(argv)
        except SystemExit as error:  # argparse: a usage line and exit 2
            code = error.code if isinstance(error.code, int) else 2
        except Reached:  # --debug would re-raise it; main never sees --debug here
            code = "reached"
        except BaseException as error:  # noqa: BLE001 - anything escaping main is the finding
            code = type(error).__name__
    text = err.getvalue()
    if "Reached" in text:
        code = "reached"
    return code, text


def fuzz_options(rng: random.Random, root: Path, report: Report, deadline: float) -> None:
    config = root / "train.yaml"
    tasks = {"t2i": {"source": {"type": "shapes"}}}
    config.write_text(json.dumps({"model": "shapes-base", "output_dir": str(root / "run"), "tasks": tasks}))
    commands = {
        "generate": ["generate", "--model", "shapes-base", "--task", "t2i", "--out", str(root / "pictures")],
        "eval": ["eval", "--model", "shapes-base", "--json"],
        "serve": ["serve", "--model", "shapes-base"],
        "quickstart": ["quickstart", "--out", str(root / "quickstart")],
        "upcycle": ["upcycle", "--out", str(root / "upcycled")],
        "train": ["train", str(config)],
    }
    with stubbed_work():
        while time.monotonic() < deadline:
            command = rng.choice(sorted(commands))
            options = {**OPTIONS[command]}
            chosen = rng.sample(sorted(options), rng.randint(1, min(3, len(options))))
            given = [(flag, random_value(rng)) for flag in chosen]
            prefix = [("--threads", random_value(rng))] if rng.random() < 0.15 else []
            argv = [item for pair in prefix for item in pair] + commands[command]
            argv += [f"{flag}={value}" for flag, value in given]  # = keeps "-1" a value, not an option
            code, err = run_main(argv)
            report.cases += 1
            values = [*((GLOBAL[flag], value) for flag, value in prefix)]
            values += [(options[flag], value) for flag, value in given]
            check_case(argv, code, err, values, report)


def check_case(argv: list[str], code: int | str, err: str, values: list, report: Report) -> None:
    if code == "reached" or code == 0:
        report.reached += 1
        bad = [text for (kind, low, high), text in values if not in_range(kind, text, low, high)]
        if bad:
            report.failures.append(f"accepted {bad}: mtu {' '.join(argv)}")
        return
    if code not in (1, 2) or "Traceback" in err or "(unexpected;" in err or not err.strip():
        report.failures.append(f"exit {code}: mtu {' '.join(argv)}\n{err.strip()[-600:]}")


# --- damaged model folders --------------------------------------------------------------------------------

JUNK = [
    *(None, True, -1, 0, 1, 2**31, 10**9, 10**30, -(10**9), 1.5, 1e308, float("nan"), float("inf"), "", "x"),
    *("\u0000", "\uff54\uff12\uff49", [], {}, [1, 2], {"a": 1}, [{"name": "t2i"}], [[[]]]),
]
CONFIG_KEYS = [
    *("tasks", "num_experts", "router_hidden_dim", "task_embedding_dim", "router_bias", "gate_dropout"),
    *("target_modules", "base_model_name_or_path", "base_model_class", "mtu_version", "unknown"),
]


def damage(folder: Path, rng: random.Random) -> str:
    """Damage one part of an intact MTU folder at random; returns what was done, for the failure message."""
    config, weights = folder / "mtu_config.json", folder / "mtu_model.safetensors"
    kind = rng.choice(["value", "drop", "task", "config-bytes", "weights", "sampler", "method", "remove"])
    if kind in ("value", "drop", "task"):
        data = json.loads(config.read_text())
        key = rng.choice(CONFIG_KEYS)
        if kind == "value":
            data[key] = rng.choice(JUNK)
        elif kind == "drop":
            data.pop(key, None)
        else:
            key = rng.choice(["name", "conditioning", "extra_channels", "upscale", "prompt", "phrases"])
            data["tasks"][rng.randrange(len(data["tasks"]))][key] = rng.choice(JUNK)
        config.write_text(json.dumps(data))
        return f"{kind} {key}"
    if kind == "config-bytes":
        raw = config.read_bytes()
        config.write_bytes(rng.choice([raw[: rng.randrange(len(raw))], b"\xff\xfe" + raw, b"", rng.randbytes(64)]))
        return kind
    if kind == "weights":
        raw = bytearray(weights.read_bytes())
        how = rng.choice(["truncate", "flip", "length", "random"])
        if how == "truncate":
            raw = raw[: rng.randrange(len(raw))]
        elif how == "flip":
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(min(len(raw), 400))] = rng.randrange(256)
        elif how == "length":
            raw[:8] = struct.pack("<Q", rng.choice([0, 2, 2**40, 2**64 - 1, len(raw)]))
        else:
            raw = bytearray(rng.randbytes(rng.randint(0, 256)))
        weights.write_bytes(bytes(raw))
        return f"weights {how}"
    if kind == "sampler":
        bad = [*JUNK, {"t2i": {"num_inference_steps": 10**9}}, {"t2i": {"guidance_scale": float("inf")}}]
        (folder / "sampler.json").write_text(json.dumps(rng.choice(bad)))
        return kind
    if kind == "method":
        method = rng.choice(["mtu", "lora", "ia3", "full", "single-task", "x", None])
        adapter = rng.choice([None, {}, {"method": "lora", "rank": rng.choice([0, 4, 10**9, -1])}, {"bogus": 1}, 5])
        (folder / "training_method.json").write_text(json.dumps({"method": method, "adapter": adapter}))
        return f"method {method} {adapter}"
    victim = rng.choice([config, weights])
    victim.unlink()
    return f"removed {victim.name}"


def fuzz_info(rng: random.Random, root: Path, model: Path, report: Report, deadline: float) -> None:
    case = 0
    while time.monotonic() < deadline:
        folder = root / f"damaged-{case}"
        shutil.copytree(model, folder)
        done = damage(folder, rng)
        argv = ["info", str(folder), *(["--json"] if rng.random() < 0.3 else [])]
        code, err = run_main(argv)
        report.cases, report.folders = report.cases + 1, report.folders + 1
        last = (err.strip().splitlines() or [""])[-1]  # progress bars and library warnings may come before it
        if (
            code not in (0, 1)
            or "Traceback" in err
            or "(unexpected;" in err
            or code == 1
            and "info: error: " not in last
        ):
            report.failures.append(f"exit {code} after {done}: mtu {' '.join(argv)}\n{err.strip()[-600:]}")
        shutil.rmtree(folder)
        case += 1


def fuzz(seconds: float, seed: int, root: Path, model: Path | None = None) -> Report:
    """Fuzz for about `seconds`: half on the numeric options, half on damaged folders given to `mtu info`
    (`model`: an MTU folder to damage; default: a tiny one made under `root`)."""
    rng, report = random.Random(seed), Report()
    start = time.monotonic()
    fuzz_options(rng, root, report, start + seconds / 2)
    if model is None:
        from tests.helpers import upcycle_tiny_sd_pipeline

        model = upcycle_tiny_sd_pipeline(root / "tiny")
    fuzz_info(rng, root, model, report, start + seconds)
    return report


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    with tempfile.TemporaryDirectory() as root:
        report = fuzz(args.seconds, seed, Path(root))
    print(report.summary(seed))
    for failure in report.failures[:20]:
        print(failure)
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
