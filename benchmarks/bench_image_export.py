"""Image export benchmark: EfficientNet-Lite0 (ImageNet weights) with a `head` trained on a
small CIFAR-10 subset, as PyTorch (as trained, and with its precision forced to fp32), ONNX fp32
and ONNX int8 (static, calibrated on the training images), in one run on this machine.

Data (../shared/data/cifar10_images): 50 training images per class train the head (it picks
its C on a 10% split of them) and calibrate int8; 50 other training images per class are the
export gate's `--val`; 100 test images per class (1,000) are scored by every variant, once.

Per variant: test accuracy; images/s of the model (pixel_values in, logits out; decoding and
the transform are the same for all, done once beforehand) at batch 1 and 32, with the same
thread count for torch and onnxruntime; images/s end to end (`TunedModel.predict` on the files,
decoding included) at batch 32. Variants take turns for `--rounds` rounds, each keeps its best.
The exports are forced (written even if the gate refuses) so that every variant is measured;
each one's gate verdict on the validation images is recorded with it.
Target: int8 >= 3x the fp32 PyTorch images/s at <= 0.5 points accuracy loss (on test).

    HF_HUB_OFFLINE=1 python benchmarks/bench_image_export.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10_images"
OUT = ROOT / "benchmarks" / "results" / "image_export.json"
BASE = "efficientnet-lite0"
TARGET_SPEEDUP, TARGET_MAX_LOSS = 3.0, 0.5


def subsets(per_class: int, val_per_class: int, test_per_class: int):
    """(fit, gate validation, test): fit and validation disjoint, from the training images."""
    from tuneforge.data.sampling import sample_shots
    from tuneforge.images.dataset import load_images

    train = load_images(DATA / "train")
    fit = sample_shots(train, per_class, seed=0)
    used = set(fit.texts)
    rest = train.subset([i for i, t in enumerate(train.texts) if t not in used])
    val = sample_shots(rest, val_per_class, seed=1)
    test = sample_shots(load_images(DATA / "test"), test_per_class, seed=0)
    return fit, val, test


def timed(fn, pixels, batch: int, images: int) -> dict:
    """images/s of `fn` over consecutive batches of `pixels` (after a warm-up call)."""
    fn(pixels[:batch])
    latencies, done = [], 0
    start = time.perf_counter()
    while done < images:
        x = pixels[done % len(pixels) :][:batch]
        t = time.perf_counter()
        fn(x)
        latencies.append(time.perf_counter() - t)
        done += len(x)
    total = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "batch": batch,
        "images": done,
        "images_per_second": round(done / total, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=50, help="Training images per class.")
    ap.add_argument("--val-per-class", type=int, default=50, help="Gate images per class.")
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch1-images", type=int, default=64, help="Per variant and round.")
    ap.add_argument("--batch32-images", type=int, default=256, help="Per variant and round.")
    ap.add_argument("--calibration", default="minmax", help="minmax, percentile or entropy.")
    ap.add_argument(
        "--keep-fp32", default=None, help="Comma-separated: first,depthwise,head (default: head)."
    )
    ap.add_argument("--model", type=Path, help="A trained artifact to reuse (skips training).")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep-artifacts", action="store_true", help="Keep the exported models.")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"skipped: needs {DATA} (the shared CIFAR-10 images)")
        return
    import torch

    torch.set_num_threads(args.threads)
    os.environ["TUNEFORGE_ORT_THREADS"] = str(args.threads)
    from tuneforge.evaluation.provenance import run_header, save_runs

    header = run_header(threads=args.threads)  # before we load the machine
    import tuneforge
    from tuneforge.export import export_model

    fit, val, test = subsets(args.per_class, args.val_per_class, args.test_per_class)
    work = Path(tempfile.mkdtemp(prefix="bench-image-export-"))
    print(f"artifacts in {work}", flush=True)
    t0 = time.perf_counter()
    if args.model:
        model = tuneforge.TunedModel.load(args.model)
    else:
        model = tuneforge.tune(
            fit, task="image-classification", base=BASE, method="head", progress=False,
            out=work / "torch",
        )  # fmt: skip
    train_seconds = None if args.model else round(time.perf_counter() - t0, 1)
    keep = None if args.keep_fp32 is None else tuple(k for k in args.keep_fp32.split(",") if k)
    exports, reports = {}, {}
    for name, options in (
        ("onnx fp32", {}),
        ("onnx int8", {"quantize": "int8", "calibrate": fit,
                       "calibration_method": args.calibration, "keep_fp32": keep}),
    ):  # fmt: skip
        t0 = time.perf_counter()
        report = export_model(model, work / name.replace(" ", "-"), val=val, force=True, **options)
        reports[name] = {**report.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}
        exports[name] = tuneforge.TunedModel.load(report.path)
        print(json.dumps({name: reports[name]}), flush=True)

    # the test pictures through the artifact's processor (the evaluation transform), once
    pixels = torch.cat(
        [model.tokenizer(test.texts[i : i + 64])["pixel_values"] for i in range(0, len(test), 64)]
    )
    classifier = model.runtime.classifier
    trained = classifier.precision

    def torch_variant(precision: str):
        def logits(x):
            classifier.precision = precision
            try:
                return model.runtime.forward({"pixel_values": x})["logits"]
            finally:
                classifier.precision = trained

        def predict(paths):
            classifier.precision = precision
            try:
                return model.predict(paths, batch_size=32)
            finally:
                classifier.precision = trained

        return logits, predict

    def onnx_variant(exported):
        def logits(x):
            return exported.runtime.forward({"pixel_values": x})["logits"]

        return logits, lambda paths: exported.predict(paths, batch_size=32)

    variants = {
        f"torch as trained ({trained})": torch_variant(trained),
        "torch fp32": torch_variant("fp32"),
    } | {name: onnx_variant(exported) for name, exported in exports.items()}
    labels = np.array([model.labels.index(lab) for lab in test.labels])
    rows = {name: {"variant": name} for name in variants}
    for name, (logits, _) in variants.items():  # accuracy: every test image once, batch 32
        z = np.concatenate([logits(pixels[i : i + 32]) for i in range(0, len(pixels), 32)])
        rows[name]["test_accuracy"] = round(float((z.argmax(1) == labels).mean()), 4)
        rows[name]["test_images"] = len(labels)
        print(json.dumps(rows[name]), flush=True)
    files = test.texts[: min(args.batch32_images, len(test))]
    for _ in range(args.rounds):  # turns: every variant sees the same changes of load
        for name, (logits, predict) in variants.items():
            row = rows[name]
            for key, result in (
                ("batch_1", timed(logits, pixels, 1, args.batch1_images)),
                ("batch_32", timed(logits, pixels, 32, args.batch32_images)),
            ):
                if key not in row or result["images_per_second"] > row[key]["images_per_second"]:
                    row[key] = result
            start = time.perf_counter()
            predict(files)  # decoding and the evaluation transform included
            e2e = round(len(files) / (time.perf_counter() - start), 1)
            key = "end_to_end_batch_32_images_per_second"
            row[key] = max(e2e, row.get(key, 0.0))
            print(json.dumps(row), flush=True)
    fp32 = rows["torch fp32"]
    for row in rows.values():
        row["speedup_vs_torch_fp32"] = {
            key: round(row[key]["images_per_second"] / fp32[key]["images_per_second"], 2)
            for key in ("batch_1", "batch_32")
        }
        row["accuracy_loss_points_vs_torch_fp32"] = round(
            (fp32["test_accuracy"] - row["test_accuracy"]) * 100, 2
        )
    int8 = rows["onnx int8"]
    target = {
        "speedup_needed": TARGET_SPEEDUP,
        "max_loss_points": TARGET_MAX_LOSS,
        "speedup_batch_1": int8["speedup_vs_torch_fp32"]["batch_1"],
        "speedup_batch_32": int8["speedup_vs_torch_fp32"]["batch_32"],
        "loss_points": int8["accuracy_loss_points_vs_torch_fp32"],
    }
    target["met"] = (
        min(target["speedup_batch_1"], target["speedup_batch_32"]) >= TARGET_SPEEDUP
        and target["loss_points"] <= TARGET_MAX_LOSS
    )
    run = {
        "benchmark": "image export: EfficientNet-Lite0 + head on CIFAR-10, torch vs ONNX fp32/int8",
        **header,
        "data": {
            "source": str(DATA),
            "train_images": len(fit),
            "gate_val_images": len(val),
            "test_images": len(test),
            "image_side": int(pixels.shape[-1]),
        },
        "train_seconds": train_seconds,
        "torch_precision_as_trained": trained,
        "exports": reports,
        "results": list(rows.values()),
        "target": target,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    save_runs(args.out, [run], benchmark=run["benchmark"])
    print(json.dumps(target))
    print(f"wrote {args.out}")
    if not args.keep_artifacts:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    t_start = time.perf_counter()
    sys.exit(main())
