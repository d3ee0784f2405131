"""Concurrent requests share model batches: whatever queued up while the model was busy
(plus anything arriving within ``wait_s``) runs through it together, in one worker
thread (torch already uses every core)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ScoreFn = Callable[[list[str]], np.ndarray]


class MicroBatcher:
    def __init__(self, score: ScoreFn, max_batch: int, wait_s: float) -> None:
        self._score = score
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[np.ndarray]]] = asyncio.Queue()
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
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self._wait_s
            while size < self._max_batch:
                if not self._queue.empty():
                    item = self._queue.get_nowait()
                else:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        break
                batch.append(item)
                size += len(item[0])
            live = [(texts, future) for texts, future in batch if not future.cancelled()]
            if not live:
                continue
            texts = [text for item_texts, _ in live for text in item_texts]
            try:
                scores = await loop.run_in_executor(self._executor, self._score, texts)
            except Exception as exc:  # every waiter learns of the failure
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for item_texts, future in live:
                if not future.done():
                    future.set_result(scores[start : start + len(item_texts)])
                start += len(item_texts)
