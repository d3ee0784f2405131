"""The baselines of ``openchatkit bench serving``: the chat model run with ``transformers``
``generate`` in this process, as OpenChatKit's ``inference/bot.py`` runs it (one request at a
time), and on static batches (a batch starts when it is full and ends when its longest answer
does; left padding).

Times come from a logits processor that notes the clock at each decoding step: its first call
follows the prefill, so the first token is ready then (TTFT); the rest divided by the remaining
tokens is the time per output token (TPOT).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openchatkit.bench.serving_load import RequestTiming


@dataclass
class BatchRun:
    timings: list[RequestTiming]
    wall_s: float


class StepClock:
    """A ``LogitsProcessor`` that only notes when each decoding step happens."""

    def __init__(self) -> None:
        self.steps: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(time.perf_counter())
        return scores


class TransformersBaseline:
    """The chat model from its local directory (no hub), greedy, a fixed answer length."""

    def __init__(self, model_dir: Path, dtype: str = "float32", threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=getattr(torch, dtype), local_files_only=True
        ).eval()
        self.dtype = dtype

    def fastest_threads(self, prompt: list[dict[str, str]], tokens: int = 8) -> int:
        """Use 1 thread or every core, whichever decodes faster here and now: on a machine busy
        with other work, OpenMP threads waiting on each other can cost more than they give."""
        timed: dict[int, float] = {}
        for threads in sorted({1, os.cpu_count() or 1}):
            self.torch.set_num_threads(threads)
            self.generate([prompt], 2)
            timed[threads] = min(self.generate([prompt], tokens).wall_s for _ in range(2))
        best = min(timed, key=lambda t: timed[t])
        self.torch.set_num_threads(best)
        return best

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text vLLM's chat endpoint builds: the model's own chat template."""
        return str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def generate(self, batch: list[list[dict[str, str]]], max_new_tokens: int) -> BatchRun:
        """One ``generate`` call over ``batch`` (1 = OpenChatKit's bot); every answer is
        ``max_new_tokens`` long (EOS suppressed until then), as vLLM's ``ignore_eos`` does."""
        from transformers import LogitsProcessorList

        texts = [self.render(m) for m in batch]
        started = time.perf_counter()
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        clock = StepClock()
        with self.torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=1.0,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=LogitsProcessorList([clock]),
            )
        ended = time.perf_counter()
        new_tokens = int(output.shape[1] - inputs["input_ids"].shape[1])
        first = clock.steps[0] if clock.steps else ended
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        timings = [
            RequestTiming(
                ttft_s=first - started, latency_s=ended - started, prompt_tokens=int(n), completion_tokens=new_tokens
            )
            for n in prompt_lengths
        ]
        return BatchRun(timings, ended - started)


def run_static(
    baseline: TransformersBaseline, prompts: list[list[dict[str, str]]], batch_size: int, max_new_tokens: int
) -> BatchRun:
    """Consecutive batches of ``batch_size`` (closed loop: the next batch's requests arrive as
    the previous batch ends, so each request's TTFT counts from its batch's start)."""
    timings: list[RequestTiming] = []
    wall = 0.0
    for start in range(0, len(prompts), batch_size):
        run = baseline.generate(prompts[start : start + batch_size], max_new_tokens)
        timings += run.timings
        wall += run.wall_s
    return BatchRun(timings, wall)


def queued(one_at_a_time: list[RequestTiming], concurrency: int) -> tuple[list[RequestTiming], float]:
    """What ``concurrency`` users see from a server that answers one request at a time (FIFO):
    the measured service times replayed in a closed loop (cycled to at least 2 x concurrency
    requests, as the prompts cycle). Request k arrives when request k - concurrency ends and
    starts when request k - 1 ends, so it waits for those between. Returns the requests as
    seen and the replay's wall time."""
    count = max(len(one_at_a_time), 2 * concurrency)
    ends: list[float] = []
    seen: list[RequestTiming] = []
    for k in range(count):
        timing = one_at_a_time[k % len(one_at_a_time)]
        start = ends[-1] if ends else 0.0
        arrival = ends[k - concurrency] if k >= concurrency else 0.0
        ends.append(start + timing.latency_s)
        waited = start - arrival
        seen.append(
            RequestTiming(
                ttft_s=waited + timing.ttft_s,
                latency_s=waited + timing.latency_s,
                prompt_tokens=timing.prompt_tokens,
                completion_tokens=timing.completion_tokens,
            )
        )
    return seen, ends[-1]
