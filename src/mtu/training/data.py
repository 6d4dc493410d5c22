"""Multi-task batches that are a pure function of (seed, optimizer step, sample index).

Sample j of step s is drawn from its own generator, ``SeedSequence(seed, spawn_key=(s, j))``: its task
(by the sampling weights), its conditioning dropout, its noise seed and its example. Process p of P
takes, in micro-batch m, the global samples ``(m * P + p) * batch_size + i``. Hence

- resuming at step s needs no data state and no skipped batches: the stream restarts at s exactly;
- 1 process x accumulation 2 x batch 4, 2 processes x batch 4 and 1 process x batch 8 see the same
  samples with the same noise, so their updates agree to float round-off;
- the held-out Shapes evaluation sets (spawn keys of another shape) are never drawn.

LoRA / IA3 cannot mix tasks in one forward: for them one task is drawn per micro-batch from
``SeedSequence(seed, spawn_key=(BATCH_TASK_KEY, s, m))``, the same on every process.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

import numpy as np
import torch

from mtu.training.cache import CachedExample, stack_cached
from mtu.training.pairs import Pair, UnreadableSample, stack_pairs

logger = logging.getLogger(__name__)

BATCH_TASK_KEY = 0xBA7C  # spawn keys (BATCH_TASK_KEY, step, micro) never equal a sample's (step, index)


@dataclass(frozen=True)
class Dropout:
    """Per-sample probabilities of dropping only the text, only the image, or both (InstructPix2Pix)."""

    text: float = 0.05
    image: float = 0.05
    both: float = 0.05

    def decide(self, r: float, has_image: bool) -> tuple[bool, bool]:
        """(drop text, drop image) for a uniform draw `r`; without a conditioning image only the text can go."""
        r = float(r)
        if not has_image:
            return r < self.text + self.both, False
        drop_text = r < self.text or self.text + self.image <= r < self.text + self.image + self.both
        drop_image = self.text <= r < self.text + self.image + self.both
        return drop_text, drop_image


@dataclass(frozen=True)
class Layout:
    """How the global batch of one optimizer step is split over micro-batches and processes."""

    batch_size: int  # per process, per micro-batch
    accumulation: int = 1
    num_processes: int = 1
    process_index: int = 0

    def sample_indices(self, micro: int) -> range:
        start = (micro * self.num_processes + self.process_index) * self.batch_size
        return range(start, start + self.batch_size)


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(step, index)))


class StepBatches(torch.utils.data.Dataset):
    """Micro-batch k of this process = micro-batch k % accumulation of optimizer step k // accumulation.

    Args:
        sources: task name -> opened source (`mtu.training.sources.open_source`), in task-id order.
        weights: task name -> sampling weight.
        seed: the data seed.
        layout: batch split.
        dropout: conditioning dropout.
        one_task_per_batch: LoRA / IA3: every sample of a micro-batch has the same task.
        max_skips: unreadable samples tolerated in a row for one slot before raising RuntimeError.
    """

    def __init__(
        self,
        sources: dict,
        weights: dict[str, float],
        seed: int,
        layout: Layout,
        dropout: Dropout,
        one_task_per_batch: bool = False,
        max_skips: int = 50,
    ) -> None:
        self.sources, self.seed, self.layout, self.dropout = sources, seed, layout, dropout
        self.task_names = list(sources)
        total = sum(weights[name] for name in self.task_names)
        self.probabilities = np.array([weights[name] / total for name in self.task_names])
        self.one_task_per_batch, self.max_skips = one_task_per_batch, max_skips

    def __len__(self) -> int:
        return 2**62  # indexed by micro-batch number; the sampler decides where to start and stop

    def batch_task(self, step: int, micro: int) -> int:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(BATCH_TASK_KEY, step, micro)))
        return int(rng.choice(len(self.task_names), p=self.probabilities))

    def __getitem__(self, k: int) -> dict:
        step, micro = divmod(k, self.layout.accumulation)
        fixed = self.batch_task(step, micro) if self.one_task_per_batch else None
        samples, skipped = [], []
        for index in self.layout.sample_indices(micro):
            rng = sample_rng(self.seed, step, index)
            task = fixed if fixed is not None else int(rng.choice(len(self.task_names), p=self.probabilities))
            samples.append((task, *self._sample(self.task_names[task], rng, skipped)))
        samples.sort(key=lambda sample: sample[0])  # contiguous task runs: one slice per task in every MTU layer
        return collate(samples, step, skipped)

    def _sample(
        self, task: str, rng: np.random.Generator, skipped: list[str]
    ) -> tuple[Pair | CachedExample, bool, bool, int]:
        source = self.sources[task]
        noise_seed, r = int(rng.integers(2**62)), float(rng.random())
        for _ in range(self.max_skips):
            try:
                pair = source.draw(rng)
                break
            except UnreadableSample as error:
                skipped.append(f"{task}: {error}")
        else:
            raise RuntimeError(
                f"task {task!r}: {self.max_skips} unreadable samples in a row (last: {skipped[-1]}); "
                "is the dataset mostly corrupt, or its columns wrong? (data.max_skips raises the limit)"
            )
        # Inpainting keeps its masked image (as SD-inpainting training does): only "image" layouts drop it.
        drop_text, drop_image = self.dropout.decide(r, has_image=pair.droppable_image)
        return pair, drop_text, drop_image, noise_seed


def collate(samples: list[tuple[int, Pair | CachedExample, bool, bool, int]], step: int, skipped: list[str]) -> dict:
    """Stack (task id, example, drop text, drop image, noise seed) samples into one micro-batch.

    Pairs give images and texts (encoded by the step, `encode_batch`); cached examples give their
    encodings directly, under "encoded", with the same dropout applied.
    """
    examples = [example for _, example, *_ in samples]
    drop_text = [drop for _, _, drop, _, _ in samples]
    drop_image = [drop for *_, drop, _ in samples]
    batch = {
        "step": step,
        "task_ids": torch.tensor([task for task, *_ in samples], dtype=torch.long),
        "drop_image": torch.tensor(drop_image),
        "noise_seeds": torch.tensor([seed for *_, seed in samples], dtype=torch.long),
        "skipped": skipped,
    }
    if isinstance(examples[0], CachedExample):
        return {**batch, "encoded": stack_cached(examples, drop_text, drop_image)}
    texts = ["" if drop else pair.text for pair, drop in zip(examples, drop_text)]
    return {**batch, **stack_pairs(examples), "texts": texts}


def micro_batches(dataset: StepBatches, first_step: int, last_step: int, num_workers: int):
    """A DataLoader over the micro-batches of optimizer steps [first_step, last_step)."""
    accumulation = dataset.layout.accumulation
    indices = range(first_step * accumulation, last_step * accumulation)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=indices, num_workers=num_workers, worker_init_fn=_ignore_interrupts
    )


def _ignore_interrupts(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: workers must outlive it so the trainer can finish its step
    # and checkpoint (the main process decides when to stop).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
