"""Does bf16 autocast or torch.compile speed up training steps on this CPU?

Times forward+backward of the default encoder + head on a banking-like batch (32 × 24 tokens),
the three variants interleaved in one run so machine load hits them alike; reports ratios to
fp32 eager. The trainer keeps `bf16` and `compile` off by default unless this shows a gain.

    HF_HUB_OFFLINE=1 python benchmarks/bench_precision.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from tuneforge.evaluation.provenance import run_header

COMPILE_LIMIT = 420
OUT = Path(__file__).resolve().parent / "results" / "precision.json"


def build():
    from transformers import AutoModel

    from tuneforge.models.classifier import Pooler, TextClassifier, build_head
    from tuneforge.models.registry import quiet_hf, resolve_base

    quiet_hf()
    encoder = AutoModel.from_pretrained(str(resolve_base("minilm").path))
    return TextClassifier(encoder, build_head(384, 77), Pooler("mean"))


def step_timer(model, batch, labels, bf16: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - start

    return step


def _try_compile(variants, model, batch, labels, limit: int) -> float | str:
    """Compile (timed, bounded by `limit` seconds) and add the variant if it finishes."""
    import signal

    def give_up(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(limit)
    start = time.perf_counter()
    try:
        step = step_timer(torch.compile(model), batch, labels, False)
        step()  # compilation happens on the first call
        variants["compile"] = step
        return round(time.perf_counter() - start, 1)
    except TimeoutError:
        return f"not finished within {limit} s"
    except Exception as exc:  # no compiler toolchain, unsupported op, ...
        return f"failed: {type(exc).__name__}: {exc}"[:300]
    finally:
        signal.alarm(0)


def main(rounds: int = 8) -> None:
    header = run_header()  # before we load the machine
    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (32, 24)),
        "attention_mask": torch.ones(32, 24, dtype=torch.long),
    }
    labels = torch.randint(0, 77, (32,))
    eager = build().train()
    compiled_model = build().train()
    variants = {
        "fp32": step_timer(eager, batch, labels, False),
        "bf16_autocast": step_timer(build().train(), batch, labels, True),
    }
    compile_seconds = _try_compile(variants, compiled_model, batch, labels, limit=COMPILE_LIMIT)
    for fn in variants.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "median_step_seconds": med,
        "compile_seconds": compile_seconds,
        "speedup_vs_fp32": {k: round(med["fp32"] / v, 3) for k, v in med.items()},
        **header,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    OUT.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
