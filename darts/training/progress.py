"""Progress of a training loop: step, loss, learning rate, examples/s and ETA, logged and written
to TensorBoard."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterable, Iterator, TypeVar

import jax
import tensorboardX
from absl import logging

T = TypeVar("T")
# A progress line at most this often: a user can tell a slow machine from a hung one, and a long
# run's log stays a few screens long.
LOG_EVERY_SECONDS = 30.0


def _format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLogger:
  """Logs step, loss, learning rate, examples/s and ETA, and writes them to TensorBoard."""

  SHOWN = ("loss", "expected_latency_ms", "entropy", "temperature")

  def __init__(self, writer: tensorboardX.SummaryWriter, start_step: int, total_steps: int,
               every_seconds: float = LOG_EVERY_SECONDS):
    self.writer, self.total_steps = writer, total_steps
    self.every_seconds = every_seconds
    self.start_time = self.window_time = time.perf_counter()
    self.printed_time: float | None = None  # When the last progress line was printed.
    self.window_step = start_step
    self.window_examples = 0.0
    self.train_time = 0.0
    self.train_examples = 0.0
    self.losses: list[tuple[int, float]] = []  # (step, loss) at every logged step of this run.

  def update(self, step: int, examples: float, step_metrics: dict[str, float],
             lr: float) -> None:
    self.window_examples += examples
    now = time.perf_counter()
    elapsed = now - self.window_time
    steps = step - self.window_step
    examples_per_sec = self.window_examples / elapsed
    eta = (self.total_steps - step) * elapsed / steps
    # Every update goes to TensorBoard; a line is printed every `every_seconds`, and for the
    # first and last updates.
    if (self.printed_time is None or now - self.printed_time >= self.every_seconds
        or step == self.total_steps):
      self.printed_time = now
      shown = " ".join(f"{name} {step_metrics[name]:.4g}" for name in self.SHOWN
                       if name in step_metrics)
      logging.info("step %d/%d (%.1f%%) %s lr %.2e | %.1f examples/s | elapsed %s, ETA %s",
                   step, self.total_steps, 100 * step / self.total_steps, shown, lr,
                   examples_per_sec, _format_duration(now - self.start_time),
                   _format_duration(eta))
    for name, value in {**step_metrics, "lr": lr, "examples_per_sec": examples_per_sec}.items():
      self.writer.add_scalar(f"train/{name}", value, step)
    self.train_time += elapsed
    self.train_examples += self.window_examples
    self.window_time, self.window_step, self.window_examples = now, step, 0.0
    if "loss" in step_metrics:
      self.losses.append((step, float(step_metrics["loss"])))

  @contextlib.contextmanager
  def paused(self, pending: Any) -> Iterator[None]:
    """Keeps evaluation and checkpointing out of the throughput and ETA.

    Args:
      pending: the training state. Dispatch is asynchronous, so steps can still be running when
        the pause starts; they are waited for first and count as training, not as the pause (a
        search that read its state every 10 steps showed 5x its real examples/s).
    """
    jax.block_until_ready(pending)
    start = time.perf_counter()
    yield
    self.window_time += time.perf_counter() - start


class Counter:
  """Logs "`what`: done/total, elapsed, ETA" every `every_seconds` and when done reaches total.

  For phases with no step loop of their own, whose items come one by one (`logged`) or from a
  callback (fitness evaluations in an evolutionary search).
  """

  def __init__(self, total: int, what: str, every_seconds: float = LOG_EVERY_SECONDS):
    self.total, self.what, self.every_seconds = total, what, every_seconds
    self.start = self.last = time.perf_counter()
    self.shown = 0  # `done` of the last line logged.
    logging.info("%s: %d to do.", what, total)

  def update(self, done: int, note: str = "", final: bool = False) -> None:
    """Logs if due; `final` (the work ended, maybe short of `total`) logs what is not shown."""
    now = time.perf_counter()
    if (now - self.last >= self.every_seconds or done == self.total
        or (final and done != self.shown)):
      self.last, self.shown = now, done
      logging.info("%s: %d/%d (%.0f%%)%s, elapsed %s, ETA %s", self.what, done, self.total,
                   100 * done / max(self.total, 1), f", {note}" if note else "",
                   _format_duration(now - self.start),
                   _format_duration((now - self.start) / max(done, 1) * (self.total - done)))


def logged(items: Iterable[T], total: int, what: str,
           every_seconds: float = LOG_EVERY_SECONDS) -> Iterator[T]:
  """Yields `items`, logging "`what`: i/total, elapsed, ETA" every `every_seconds` and at the end.

  For phases with no step loop of their own: teacher logits, importance, conversions.
  """
  counter = Counter(total, what, every_seconds)
  for done, item in enumerate(items, 1):
    yield item
    counter.update(done)
