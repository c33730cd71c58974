"""Assistant benchmark (issues 8 and 21): the README's demo assistant, and held-out assistants
facing real out-of-scope questions.

1. `assist init` + `assist train` on the shipped banking77 sample (25 questions per intent);
   `assist eval`: intent accuracy on the banking77 test set, out-of-scope AUROC and FPR@95%TPR
   by leave-25%-of-intents-out (5 folds) on banking77 and hwu64, retrieval recall@k on the
   calibration queries and on 30 held-out ones (retrieval_test.csv), and the path (answer,
   article, hand-off) of hwu64 test questions (home assistant: out of domain);
2. held-out assistants, whose out-of-scope questions the training never saw:
   a. the full banking77 training set, with the hwu64 test questions as out of scope;
   b. hwu64 (its training set, placeholder approved answers, no articles), with the banking77
      test questions as out of scope;
   c. banking77 + hwu64 intents (141) minus a seeded 10% of each (127 left): the held-out
      intents' test questions are out of scope, close to the known ones (a new banking
      question, as CLINC150's out-of-scope questions are for its 150 intents);
   with `--oos-examples`, also d: as c, but a further seeded 10% of each set's intents is given
   only as intents rows labelled `oos` (out-of-scope examples the user collected);
   e. the issue's case, validation accuracy near 95%: hwu64's 18 scenarios as intents minus a
      seeded 10%, whose test questions are out of scope; also with the accuracy-only rule.
   For each: in-scope questions answered and right, out-of-scope ones not answered (article or
   hand-off), and train's estimate of the latter from its own intents (leave-intents-out).
Every threshold and setting is chosen by `assist train` on a validation split of the training
data; test files are only measured. Appends a run to benchmarks/results/assist.json.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_assist.py --workdir runs/assist
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGETS = {"in_scope_answered": 0.90, "accuracy_of_answered": 0.95, "oos_not_answered": 0.80}
HELD_OUT_SHARE, SEED = 0.10, 0


def data_file(name: str, split: str) -> Path:
    path = DATA / name / "converted" / f"{split}.csv"
    if not path.exists():
        sys.exit(f"needs {path} (the shared data sets)")
    return path


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]


def write_rows(path: Path, rows: list[tuple[str, str]], labelled: bool = True) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"] if labelled else ["text"])
        out.writerows(rows if labelled else [(t,) for t, _ in rows])
    return path


def held_out_intents(rows: list[tuple[str, str]], share: float, rng, exclude=()) -> set[str]:
    names = sorted({label for _, label in rows} - set(exclude))
    return set(rng.choice(names, round(share * len(names)), replace=False).tolist())


def plain_assistant(directory: Path, rows: list[tuple[str, str]], **settings) -> Path:
    """An assistant over `rows` (label `oos`: out-of-scope examples) with a placeholder approved
    answer per intent and no articles (what it hands off is measured, not retrieved), and
    these assist.yaml `settings`."""
    from tuneforge.apps.assist.build import OOS_LABEL
    from tuneforge.apps.assist.knowledge import AssistConfig

    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    write_rows(directory / "intents.csv", rows)
    intents = sorted({label for _, label in rows} - {OOS_LABEL})
    answers = {name: f"(placeholder approved answer for {name})" for name in intents}
    (directory / "answers.yaml").write_text(yaml.safe_dump(answers, sort_keys=True))
    cfg = AssistConfig(articles="", retrieval_queries=None, **settings).model_dump(mode="json")
    (directory / "assist.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return directory


def held_out_cases(workdir: Path, with_oos_examples: bool) -> dict[str, dict]:
    """Directory, in-scope test file and out-of-scope test file of each held-out assistant."""
    from tuneforge.apps.assist.build import OOS_LABEL

    b77, hwu = "banking77", "hwu64"
    train = {name: read_rows(data_file(name, "train")) for name in (b77, hwu)}
    test = {name: read_rows(data_file(name, "test")) for name in (b77, hwu)}
    cases = {
        "a_banking77_vs_hwu64": {"test": data_file(b77, "test"), "oos": data_file(hwu, "test")},
        "b_hwu64_vs_banking77": {"test": data_file(hwu, "test"), "oos": data_file(b77, "test")},
    }
    cases["a_banking77_vs_hwu64"]["dir"] = workdir / "full"
    cases["b_hwu64_vs_banking77"]["dir"] = workdir / "hwu64"
    cases["b_hwu64_vs_banking77"]["rows"] = train[hwu]

    rng = np.random.default_rng(SEED)
    unknown = {n: held_out_intents(train[n], HELD_OUT_SHARE, rng) for n in (b77, hwu)}
    as_examples = {n: held_out_intents(train[n], HELD_OUT_SHARE, rng, unknown[n]) for n in train}
    out = set().union(*unknown.values())
    all_train = train[b77] + train[hwu]
    all_test = test[b77] + test[hwu]
    split = workdir / "held_out_split"
    split.mkdir(parents=True, exist_ok=True)
    in_scope = write_rows(split / "in_scope_test.csv", [r for r in all_test if r[1] not in out])
    oos = write_rows(split / "oos_test.csv", [r for r in all_test if r[1] in out], False)
    cases["c_mixed_held_out_intents"] = {
        "dir": workdir / "mixed",
        "rows": [r for r in all_train if r[1] not in out],
        "test": in_scope,
        "oos": oos,
        "held_out_intents": sorted(out),
    }
    if with_oos_examples:
        given = set().union(*as_examples.values())
        rows = [(t, OOS_LABEL if y in given else y) for t, y in all_train if y not in out]
        cases["d_mixed_with_oos_examples"] = cases["c_mixed_held_out_intents"] | {
            "dir": workdir / "mixed_oos",
            "rows": rows,
            "test": write_rows(
                split / "in_scope_test_d.csv", [r for r in all_test if r[1] not in out | given]
            ),
            "oos_example_intents": sorted(given),
        }
    cases |= scenario_cases(workdir, split, rng)
    return cases


def scenario_cases(workdir: Path, split: Path, rng) -> dict[str, dict]:
    """e: the issue's case on real data, an assistant accurate enough on validation that the
    accuracy target alone answers (almost) everything: hwu64's 18 scenarios (the intent name's
    first word: alarm, music, ...) as intents, minus a seeded 10% of them whose test questions
    are out of scope; and the same assistant with the accuracy-only rule of before (the
    in-scope recall target off), for comparison."""

    def scenario(rows):
        return [(text, label.split("_")[0]) for text, label in rows]

    train = scenario(read_rows(data_file("hwu64", "train")))
    test = scenario(read_rows(data_file("hwu64", "test")))
    out = held_out_intents(train, HELD_OUT_SHARE, rng)
    case = {
        "rows": [r for r in train if r[1] not in out],
        "test": write_rows(
            split / "scenario_in_scope_test.csv", [r for r in test if r[1] not in out]
        ),
        "oos": write_rows(split / "scenario_oos_test.csv", [r for r in test if r[1] in out], False),
        "held_out_intents": sorted(out),
    }
    accuracy_only = {"target_in_scope_recall": 1.0, "min_in_scope_recall": 1.0}
    return {
        "e_hwu64_scenarios": case | {"dir": workdir / "scenarios"},
        "e_hwu64_scenarios_accuracy_only": case
        | {"dir": workdir / "scenarios_accuracy_only", "settings": accuracy_only},
    }


def summary(result: dict) -> dict:
    """The issue's figures of one assistant, and whether they meet the targets."""
    intent, oos = result["intent"], result["out_of_domain"]
    row = {
        "in_scope_answered": intent["answered_at_threshold"],
        "accuracy_of_answered": intent["accuracy_of_answered"],
        "oos_not_answered": round(oos["retrieval"] + oos["handoff"], 4),
        "oos_handoff": oos["handoff"],
        "oos_retrieval": oos["retrieval"],
        "expected_unknown_handoff": result["thresholds"]["expected_unknown_handoff"],
    }
    row["targets_met"] = {k: row[k] is not None and row[k] >= v for k, v in TARGETS.items()}
    return row


def separability(directory: Path, test: Path, oos: Path) -> dict:
    """How well the assistant's score tells the two test sets apart, whatever the threshold:
    AUROC, and the out-of-scope share not answered at the thresholds that would answer 90% and
    95% of the in-scope test questions. Measured on test, so it is a bound for reading the
    figures above, never an input to them."""
    from tuneforge.apps.assist.oos import auroc, recall_threshold
    from tuneforge.apps.assist.pipeline import Assistant
    from tuneforge.data.dataset import load_data

    assistant = Assistant.load(directory)
    _, inside = assistant.intent_scores(load_data(test).texts)
    _, outside = assistant.intent_scores(load_data(oos, require_labels=False).texts)
    return {
        "auroc": round(auroc(inside, outside), 4),
        **{
            f"oos_not_answered_at_{round(100 * r)}pct_in_scope": round(
                float(np.mean(outside < recall_threshold(inside, r))), 4
            )
            for r in (0.9, 0.95)
        },
    }


def main() -> None:
    from tuneforge.apps.assist.build import demo_dir, init_assistant, train_assistant
    from tuneforge.apps.assist.evaluate import EvalOptions, print_summary, run_eval
    from tuneforge.evaluation.provenance import run_header, save_runs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "assist-bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/assist.json")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--retrain", action="store_true", help="Train again even if trained.")
    ap.add_argument("--oos-examples", action="store_true", help="Also assistant d (see above).")
    args = ap.parse_args()
    header = run_header()

    b77_train, b77_test = data_file("banking77", "train"), data_file("banking77", "test")
    hwu = f"hwu64={data_file('hwu64', 'train')},{data_file('hwu64', 'test')}"
    retrieval_test = demo_dir() / "retrieval_test.csv"
    cases = held_out_cases(args.workdir, args.oos_examples)
    demo = args.workdir / "demo"
    builds = [(demo, None, {})] + [
        (c["dir"], c.get("rows"), c.get("settings", {})) for c in cases.values()
    ]
    for directory, rows, settings in builds:
        if args.retrain or not (directory / "calibration").exists():
            if rows is not None:
                plain_assistant(directory, rows, **settings)
            else:
                init_assistant(directory, force=True)
                if directory != demo:  # the full banking77 assistant: demo answers and articles
                    shutil.copy2(b77_train, directory / "intents.csv")
            train_assistant(directory)

    demo_opts = EvalOptions(
        test=b77_test,
        oos=[f"banking77={b77_train},{b77_test}", hwu],
        out_of_domain=data_file("hwu64", "test"),
        retrieval_test=retrieval_test,
        folds=args.folds,
    )
    run = header | {
        "benchmark": "assist: answer / article / hand-off assistant, and held-out assistants "
        "with real out-of-scope questions",
        "demo": run_eval(demo, demo_opts),
        "held_out": {},
        "targets": TARGETS,
    }
    for name, case in cases.items():
        opts = EvalOptions(test=case["test"], out_of_domain=case["oos"])
        if name.startswith("a_"):
            opts.retrieval_test = retrieval_test
        result = run_eval(case["dir"], opts)
        for field in ("command", "commit", "date", "machine"):
            result.pop(field)
        keys = ("held_out_intents", "oos_example_intents", "settings")
        extra = {k: case[k] for k in keys if k in case}
        run["held_out"][name] = {
            "summary": summary(result),
            "test_separability": separability(case["dir"], case["test"], case["oos"]),
            **extra,
            "eval": result,
        }
        print_summary(result)
    for field in ("command", "commit", "date", "machine"):
        run["demo"].pop(field)
    run["notes"] = NOTES
    print_summary(run["demo"])
    for name, case in run["held_out"].items():
        print(name, case["summary"])
    save_runs(args.out, [run])
    print(f"appended a run to {args.out}")


NOTES = [
    "demo = the shipped sample, 25 questions per intent (80% train, 20% calibration)",
    "out_of_scope (demo eval): a logistic-regression head per fold on frozen all-MiniLM-L6-v2 "
    "embeddings of the full training set of the known intents; test questions of the held-out "
    "intents are the out-of-scope ones",
    "held_out.*.summary: in_scope_answered and accuracy_of_answered on the in-scope test "
    "questions (intent.answered_at_threshold, intent.accuracy_of_answered); oos_not_answered = "
    "out_of_domain.retrieval + out_of_domain.handoff on the out-of-scope test questions; "
    "expected_unknown_handoff = train's leave-intents-out estimate (3 folds of 25% of its own "
    "intents), which imitates unknown questions close to the known intents",
    "held-out assistants b-e have no articles: every question not answered is handed off",
    "e_hwu64_scenarios_accuracy_only: the same assistant as e with target_in_scope_recall 1.0, "
    "i.e. the answer threshold of before issue 21 (target_accuracy alone)",
    "held_out.*.test_separability: AUROC of the assistant's score between in-scope and "
    "out-of-scope test questions, and the out-of-scope share a threshold answering 90% / 95% "
    "of in-scope test questions would not answer: a bound measured on test, to read the "
    "figures by, never used to choose anything",
    "retrieval.calibration_queries: 28 hand-written queries over 7 articles that the retrieval "
    "threshold is calibrated on (not a held-out figure); retrieval.held_out: 30 other "
    "hand-written paraphrases (retrieval_test.csv, article and section known), never used for "
    "calibration",
]


if __name__ == "__main__":
    main()
