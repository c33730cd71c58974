"""How `head`'s logistic-regression C grid and refit behave on a data set: every C is scored on
the validation split of the training file (the one `tune` takes: 10%, seed 42), the choice is
made there, and only then is the test file scored, for the chosen C with and without refit on all
training rows. Test scores of the other Cs are printed as context, never used to choose.

    HF_HUB_OFFLINE=1 python benchmarks/bench_head_grid.py --dataset banking77
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tuneforge.evaluation.provenance import run_header, save_runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def embeddings(base: str, texts: list[str]) -> np.ndarray:
    from tuneforge.config import TrainConfig
    from tuneforge.data import TextDataset
    from tuneforge.methods.base import MethodContext
    from tuneforge.methods.embedding_cache import cached_embeddings
    from tuneforge.models.registry import resolve_base

    ds = TextDataset(texts, None)
    ctx = MethodContext(TrainConfig(base=base), resolve_base(base), ds, ds, ["x"])
    model = ctx.new_classifier(ctx.load_encoder(), normalize=True)
    return cached_embeddings(model, ctx, texts)


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    from tuneforge.data import load_data, stratified_split

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="banking77")
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--C", nargs="+", type=float, default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks/results/head_c_grid_banking77.json")
    )
    args = parser.parse_args()
    folder = DATA / args.dataset / "converted"
    record = run_header()
    full, test = load_data(folder / "train.csv"), load_data(folder / "test.csv")
    fit, val = stratified_split(full, 0.1, 42)
    x_fit, x_val, x_test = (embeddings(args.base, d.texts) for d in (fit, val, test))
    index = {lab: i for i, lab in enumerate(full.label_names)}
    y_fit, y_val, y_test = (np.array([index[y] for y in d.labels]) for d in (fit, val, test))
    rows = []
    for c in args.C:
        t0 = time.time()
        clf = LogisticRegression(C=c, max_iter=2000, random_state=42).fit(x_fit, y_fit)
        rows.append(
            {
                "C": c,
                "validation": clf.score(x_val, y_val),
                "test_context": clf.score(x_test, y_test),
                "fit_seconds": round(time.time() - t0, 1),
            }
        )
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: r["validation"])  # the first of equals
    refit = LogisticRegression(C=best["C"], max_iter=2000, random_state=42).fit(
        np.vstack([x_fit, x_val]), np.concatenate([y_fit, y_val])
    )
    run = {
        **record,
        "dataset": args.dataset,
        "base": args.base,
        "grid": rows,
        "chosen_C_on_validation": best["C"],
        "test_accuracy_chosen": best["test_context"],
        "test_accuracy_chosen_refit": refit.score(x_test, y_test),
    }
    print({k: run[k] for k in ("chosen_C_on_validation", "test_accuracy_chosen",
                               "test_accuracy_chosen_refit")})  # fmt: skip
    save_runs(Path(args.out), [run])


if __name__ == "__main__":
    main()
