"""Concurrent requests share model batches, fairly and with bounded work.

Each request is a *job* of texts. A model batch takes texts from the waiting jobs in turn
(round robin, one text per job per pass) until it holds ``max_batch`` texts or
``max_batch_chars`` characters, so a request of hundreds of long texts shares the model with
a one-line request instead of running ahead of it: the short one waits for at most one batch.
Between batches the worker drops jobs whose caller has gone (the route cancels the wait when
its client disconnects), so abandoned work stops within one batch. A batch that raises is
scored again text by text, and only the jobs owning a failing text fail. At most
``max_queued_texts`` texts wait at once; past that :class:`QueueFull`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Gauge

ScoreFn = Callable[[list[str]], np.ndarray]

QUEUED_TEXTS = Gauge("openchatkit_moderation_queued_texts", "Texts accepted and not yet scored.")
SCORED_TEXTS = Counter("openchatkit_moderation_scored_texts_total", "Texts run through the model.")
DROPPED_TEXTS = Counter(
    "openchatkit_moderation_dropped_texts_total", "Texts never scored because their caller went away."
)


class QueueFull(RuntimeError):
    """More texts are waiting than ``max_queued_texts``; the caller should retry later."""


@dataclass(eq=False)
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]
    rows: list[np.ndarray | None] = field(default_factory=list)
    next: int = 0  # the next text to put in a batch

    @property
    def unscheduled(self) -> int:
        return len(self.texts) - self.next


class MicroBatcher:
    def __init__(
        self,
        score: ScoreFn,
        max_batch: int,
        wait_s: float,
        max_batch_chars: int = 16_000,
        max_queued_texts: int = 4096,
    ) -> None:
        self._score = score
        self._max_batch = max_batch
        self._max_batch_chars = max_batch_chars
        self._max_queued = max_queued_texts
        self._wait_s = wait_s
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moderation-model")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, texts: list[str]) -> np.ndarray:
        """One probability row per text. Cancelling the call drops its unscored texts."""
        if self._queued + len(texts) > self._max_queued:
            raise QueueFull(f"{self._queued} texts are waiting for the moderation model (limit {self._max_queued})")
        job = _Job(texts, asyncio.get_running_loop().create_future(), [None] * len(texts))
        self._jobs.append(job)
        self._set_queued(self._queued + len(texts))
        self._wakeup.set()
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()  # the worker drops it before the next batch

    def _set_queued(self, value: int) -> None:
        self._queued = value
        QUEUED_TEXTS.set(value)

    def _drop_abandoned(self) -> None:
        for job in [j for j in self._jobs if j.future.done()]:
            self._jobs.remove(job)
            DROPPED_TEXTS.inc(job.unscheduled)
            self._set_queued(self._queued - job.unscheduled)

    def _take_batch(self) -> list[tuple[_Job, int]]:
        """Texts from the waiting jobs in turn, within the batch's text and character budget."""
        batch: list[tuple[_Job, int]] = []
        chars = 0
        while self._jobs and len(batch) < self._max_batch:
            job = self._jobs.popleft()
            text = job.texts[job.next]
            if batch and chars + len(text) > self._max_batch_chars:
                self._jobs.appendleft(job)
                break
            batch.append((job, job.next))
            chars += len(text)
            job.next += 1
            if job.unscheduled:
                self._jobs.append(job)
        self._set_queued(self._queued - len(batch))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self._wait_s > 0:
                await asyncio.sleep(self._wait_s)
            self._drop_abandoned()
            batch = self._take_batch()
            if not self._jobs:
                self._wakeup.clear()
            if not batch:
                continue
            texts = [job.texts[i] for job, i in batch]
            try:
                rows = await loop.run_in_executor(self._executor, self._score, texts)
                outcomes: list[np.ndarray | BaseException] = list(rows)
            except Exception:
                outcomes = await self._score_one_by_one(texts)
            SCORED_TEXTS.inc(len(texts))
            for (job, i), outcome in zip(batch, outcomes, strict=True):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    self._fail(job, outcome)
                    continue
                job.rows[i] = outcome
                if job.unscheduled == 0 and all(row is not None for row in job.rows):
                    job.future.set_result(np.stack(job.rows))  # type: ignore[arg-type]

    async def _score_one_by_one(self, texts: list[str]) -> list[np.ndarray | BaseException]:
        """A failing batch, again text by text: one bad text fails only its own request."""
        loop = asyncio.get_running_loop()
        outcomes: list[np.ndarray | BaseException] = []
        for text in texts:
            try:
                outcomes.append((await loop.run_in_executor(self._executor, self._score, [text]))[0])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _fail(self, job: _Job, exc: BaseException) -> None:
        job.future.set_exception(exc)
        if job in self._jobs:
            self._jobs.remove(job)
            self._set_queued(self._queued - job.unscheduled)
