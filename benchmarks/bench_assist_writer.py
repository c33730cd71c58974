"""Assistant writer benchmark (issue 23, item 9): the demo's 30 held-out article questions
answered by quoting the retrieved passage (today) and by a SmolLM2 writer that phrases it.

1. `assist init` + `assist train` on the demo (the README's assistant; reused when trained);
2. the 30 questions of retrieval_test.csv (query, article, section; never used to calibrate)
   through the whole assistant, without a writer: path per question, and whether a retrieval
   reply cites the right article and section;
3. `assist train-writer`: SmolLM2-135M-Instruct, 1 epoch of LoRA (or --method) on
   --per-intent question → approved-answer pairs of the demo's intents (a 2-core CPU session);
4. the same 30 questions with the writer: the same figures, plus the share of article replies
   the writer phrased (else the passage is quoted: the writer failed, or less than
   writer_min_grounding of its content words were in the passage), how much of the passage's
   and of the question's words (those the passage has) the reply keeps (no reference answers
   exist: a proxy for dropping the sentence that answers), reply lengths and seconds per reply.
   Every reply is kept in the results, to read.

The citation comes from the retrieved chunk in both runs, so the path and citation figures can
only differ if the writer failed; what the writer changes is the text. Appends a run to
benchmarks/results/assist_writer.json.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_assist_writer.py \\
        --workdir runs/assist_writer --per-intent 3 [--distractor-share 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "assist_writer.json"


def without_citation(reply: str) -> str:
    return reply.rsplit(" (from the help article “", 1)[0]


def run_questions(assistant, cases, said: dict | None = None) -> dict:
    """Path and citation of each held-out question; the writer's text measured where it wrote;
    `said`: what the writer returned per masked question, before the pipeline's checks."""
    from tuneforge.apps.assist.writer import content_words, grounded_share
    from tuneforge.serving.pii import mask_pii

    rows = []
    for case in cases:
        t0 = time.perf_counter()
        reply = assistant.decide(case.query)
        seconds = time.perf_counter() - t0
        row = {"query": case.query, "article": case.article, "section": case.section}
        row |= {"path": reply.path, "seconds": round(seconds, 3), "written": reply.written}
        if reply.path == "retrieval":
            top = reply.sources[0]
            # the chunk the reply quotes or phrases: the same search's first hit
            chunk = assistant.retriever.search(mask_pii(case.query), 1)[0].chunk
            assert (chunk.article, chunk.section) == (top["article"], top["section"])
            text = without_citation(reply.reply)
            kept, passage = set(content_words(text)), set(content_words(chunk.text))
            # the question's words that the passage has: does the reply keep them?
            asked = set(content_words(case.query)) & passage
            row |= {
                "cited": {"article": top["article"], "section": top["section"]},
                "right_article": top["article"] == case.article,
                "right_citation": (top["article"], top["section"]) == (case.article, case.section),
                "reply": reply.reply,
                "reply_words": len(text.split()),
                "passage_words": len(chunk.text.split()),
                "words_in_passage": round(grounded_share(text, chunk.text), 4),
                "passage_words_kept": round(len(kept & passage) / max(len(passage), 1), 4),
                "question_words_kept": round(len(kept & asked) / len(asked), 4) if asked else None,
                "verbatim": text.strip() in chunk.text,
            }
            if said is not None:
                row["writer_said"] = said.get(mask_pii(case.query))
        rows.append(row)
    return {"summary": summarize(rows), "questions": rows}


def summarize(rows: list[dict]) -> dict:
    n = len(rows)
    retrieval = [r for r in rows if r["path"] == "retrieval"]
    written = [r for r in retrieval if r["written"]]
    refused = [r for r in retrieval if r.get("writer_said") and not r["written"]]

    def share(k: int, of: int) -> float | None:
        return round(k / of, 4) if of else None

    def mean(key: str, of: list[dict]) -> float | None:
        values = [r[key] for r in of if r.get(key) is not None]
        return round(statistics.mean(values), 4) if values else None

    return {
        "questions": n,
        "paths": {
            p: share(sum(r["path"] == p for r in rows), n)
            for p in ("answer", "retrieval", "handoff")
        },
        "answered_with_right_citation": share(sum(r.get("right_citation", False) for r in rows), n),
        "answered_with_right_article": share(sum(r.get("right_article", False) for r in rows), n),
        "handed_off": share(sum(r["path"] == "handoff" for r in rows), n),
        "retrieval_replies_written": share(len(written), len(retrieval)),
        # the writer answered, but not from the passage or without the question's words
        "retrieval_writer_answers_refused": share(len(refused), len(retrieval)),
        "written_words_in_passage_mean": mean("words_in_passage", written),
        "passage_words_kept_mean": mean("passage_words_kept", retrieval),
        "question_words_kept_mean": mean("question_words_kept", retrieval),
        "written_verbatim_from_passage": share(sum(r["verbatim"] for r in written), len(written)),
        "reply_words_median": (
            statistics.median(r["reply_words"] for r in retrieval) if retrieval else None
        ),
        "passage_words_median": (
            statistics.median(r["passage_words"] for r in retrieval) if retrieval else None
        ),
        "seconds_per_reply_median": round(statistics.median(r["seconds"] for r in rows), 3),
    }


def main() -> None:
    import torch

    from tuneforge.apps.assist.build import demo_dir, init_assistant, train_assistant
    from tuneforge.apps.assist.evaluate import load_retrieval_test
    from tuneforge.apps.assist.knowledge import AssistConfig
    from tuneforge.apps.assist.pipeline import Assistant
    from tuneforge.apps.assist.writer import train_writer
    from tuneforge.evaluation.provenance import run_header, save_runs

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / "assist_writer")
    ap.add_argument("--per-intent", type=int, default=3, help="Training questions per intent.")
    ap.add_argument("--method", default="lora", choices=["lora", "partial", "full"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--distractor-share", type=float, default=1.0,
        help="Training passages with another intent's answer mixed in (train_writer's option).",
    )  # fmt: skip
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--limit", type=int, default=0, help="First N questions only (smoke test).")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    run = run_header(torch_threads=torch.get_num_threads())
    directory = args.workdir / "demo"
    if not (directory / "calibration").exists():
        init_assistant(directory, force=True)
        t0 = time.perf_counter()
        train_assistant(directory)
        run["intent_model_train_seconds"] = round(time.perf_counter() - t0, 1)
    cfg = AssistConfig.load(directory)
    cfg.writer = None  # the quoting assistant of today first
    cfg.save("# tuneforge assistant: paths are relative to this file's folder.\n")
    quoting = Assistant.load(directory)
    cases = load_retrieval_test(demo_dir() / "retrieval_test.csv", quoting.retriever)
    cases = cases[: args.limit] if args.limit else cases
    run["quoted"] = run_questions(quoting, cases)
    print("quoted:", run["quoted"]["summary"], flush=True)

    t0 = time.perf_counter()
    trained = train_writer(
        directory, base="smollm2", method=args.method, epochs=args.epochs,
        per_intent=args.per_intent, max_length=args.max_length, batch_size=args.batch_size,
        distractor_share=args.distractor_share,
    )  # fmt: skip
    cfg = AssistConfig.load(directory)
    cfg.writer_max_new_tokens = args.max_new_tokens
    cfg.save("# tuneforge assistant: paths are relative to this file's folder.\n")
    run["writer"] = {
        "base": "smollm2",
        "method": args.method,
        "epochs": args.epochs,
        "per_intent": args.per_intent,
        "training_conversations": trained.pairs,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "distractor_share": args.distractor_share,
        "min_grounding": cfg.writer_min_grounding,
        "min_coverage": cfg.writer_min_coverage,
        "max_new_tokens": args.max_new_tokens,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "validation": trained.model.metrics.get("validation"),
        "method_details": trained.model.config.method_details,
    }
    print("writer:", run["writer"], flush=True)
    writing = Assistant.load(directory)
    said, write = {}, writing.writer.write

    def recorded(question: str, source: str, passage: str) -> str:
        said[question] = text = write(question, source, passage)
        return text

    writing.writer.write = recorded
    run["written"] = run_questions(writing, cases, said)
    print("written:", run["written"]["summary"], flush=True)
    save_runs(args.out, [run], description=__doc__.split("\n\n")[0])
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
