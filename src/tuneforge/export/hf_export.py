"""`--format hf`: a chat model as a plain Hugging Face directory (the merged causal LM, its
tokenizer, chat template and generation config), for any tool that reads transformers
checkpoints (vLLM, TGI, llama.cpp's convert_hf_to_gguf.py, `from_pretrained`).

The directory is written atomically and loaded back before it is put in place: the same ids and
logits (float32, so only the kernel order may differ) on the GGUF export's check prompts.
"""

from __future__ import annotations

import time
from pathlib import Path

from tuneforge.export.gguf_export import ChatExportReport, chat_lm, compare_models, parity_line

HF_LIMITS = (1e-5, 1.0)


def export_hf(
    model, out: str | Path, *, check: bool = True, force: bool = False
) -> ChatExportReport:
    """Save `model` (a chat `TunedModel` or its directory) as a Hugging Face directory `out`."""
    from tuneforge.export.exporter import AccuracyGateError
    from tuneforge.paths import write_dir_atomically

    start = time.perf_counter()
    lm, tokenizer, _ = chat_lm(model, "hf")
    report = ChatExportReport(str(out), "hf", "f32", 0.0, 0.0, "")

    def write(tmp: Path) -> None:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if check:
            report.parity = _reloaded_parity(lm, tokenizer, tmp)
            if not report.parity["passed"] and not force:
                raise AccuracyGateError(
                    f"The saved directory does not match the model: {parity_line(report.parity)}"
                    ". Nothing was written; pass --force to write it anyway."
                )

    path = write_dir_atomically(Path(out), write)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    report.path, report.size_mb = str(path), round(size / 2**20, 2)
    report.seconds = round(time.perf_counter() - start, 1)
    return report


def _reloaded_parity(lm, tokenizer, directory: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.models.registry import quiet_hf

    quiet_hf()
    loaded = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    loaded_tok = AutoTokenizer.from_pretrained(str(directory))
    return compare_models(lm, tokenizer, loaded, loaded_tok, HF_LIMITS)
