"""Lay out a `Report` as one self-contained HTML file: inline CSS, JS and SVG, no network."""

from __future__ import annotations

import html
from pathlib import Path

from tuneforge.evaluation.image_report import render_image_data, render_images
from tuneforge.evaluation.report import Report
from tuneforge.paths import write_text_atomically

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1f2328}
header{background:#0d1117;color:#f0f6fc;padding:18px 32px}header h1{margin:0;font-size:20px}
nav{position:sticky;top:0;background:#f6f8fa;border-bottom:1px solid #d0d7de;padding:6px 32px;
z-index:2}nav a{margin-right:14px;color:#0969da;text-decoration:none}
main{padding:8px 32px 40px;max-width:1200px}section{margin-top:28px}
h2{border-bottom:1px solid #d0d7de;padding-bottom:4px}
.cards{display:flex;gap:14px;flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:8px;
padding:10px 16px;min-width:170px}.card b{font-size:22px;display:block}.muted{color:#656d76}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #eaeef2;padding:3px 10px;
text-align:left;vertical-align:top}th{background:#f6f8fa}table.sortable th{cursor:pointer}
td.num{text-align:right;font-variant-numeric:tabular-nums}.figs{display:flex;flex-wrap:wrap;gap:16px}
.figs svg{max-width:100%;height:auto}.tok{border-radius:3px;padding:0 1px}
.ok{color:#1a7f37}.bad{color:#cf222e}.scroll{max-height:460px;overflow:auto}
.pre{white-space:pre-wrap;max-width:380px;word-break:break-word}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0}.thumb{width:112px}
.thumbs img{display:block;width:96px;height:96px;object-fit:contain;background:#f6f8fa;
border:1px solid #d0d7de}.pair{display:grid;grid-template-columns:auto auto;gap:4px}
.pair figcaption{grid-column:1/3}figcaption{font-size:12px;overflow-wrap:anywhere}
"""

# Click a header to sort by that column; numbers compare as numbers.
JS = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click',
 () => { const body = th.closest('table').tBodies[0]; const asc = th.dataset.asc !== '1';
  th.dataset.asc = asc ? '1' : '0';
  const key = r => { const t = r.cells[col].innerText; const n = parseFloat(t);
   return isNaN(n) ? t.toLowerCase() : n; };
  [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (asc ? 1 : -1))
   .forEach(r => body.appendChild(r)); }));
"""

SECTIONS = [
    ("summary", "Summary"),
    ("spans", "Spans"),
    ("generative", "Generation"),
    ("per-class", "Per class"),
    ("confusion", "Confusions"),
    ("images", "Images"),
    ("calibration", "Calibration"),
    ("abstention", "Abstention"),
    ("errors", "Errors"),
    ("robustness", "Robustness"),
    ("data", "Data"),
    ("image-data", "Data"),
    ("explanations", "Explanations"),
    ("training", "Training"),
    ("compare", "Comparison"),
]


def esc(value) -> str:
    return html.escape(str(value))


def _table(head: list[str], rows: list[list], sortable: bool = False, nums=()) -> str:
    cls = ' class="sortable"' if sortable else ""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in nums else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table{cls}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _card(title: str, value: str, note: str = "") -> str:
    return f'<div class="card">{esc(title)}<b>{value}</b><span class="muted">{note}</span></div>'


def _summary(s: dict) -> str:
    cards = "".join(
        _card(name, f"{iv.value:.4f}", f"95% CI [{iv.low:.4f}, {iv.high:.4f}]")
        for name, iv in s["intervals"].items()
    )
    cfg = s["config"]
    meta = (
        f"{s['n']} test rows · {len(cfg.labels)} classes · method <code>{esc(cfg.method)}</code>"
        f" · base <code>{esc(cfg.base)}</code>"
    )
    unknown = s["result"].unknown_labels
    note = f"<p class='bad'>Labels unknown to the model: {esc(unknown)}</p>" if unknown else ""
    return f"<p class='muted'>{meta}</p><div class='cards'>{cards}</div>{note}"


def _per_class(per_class: dict) -> str:
    rows = [
        [esc(k), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
        for k, v in sorted(per_class.items(), key=lambda kv: kv[1]["f1"])
    ]
    table = _table(["class", "precision", "recall", "F1", "support"], rows, True, (1, 2, 3, 4))
    hint = "<p class='muted'>Worst F1 first; click a header to sort.</p>"
    return f"{hint}<div class='scroll'>{table}</div>"


def _confusion(c: dict) -> str:
    if c["svg"]:
        return f"<p class='muted'>Rows: true class, normalized per row.</p>{c['svg']}"
    rows = [
        [esc(p["true"]), esc(p["predicted"]), p["count"], "<br>".join(map(esc, p["examples"]))]
        for p in c["pairs"]
    ]
    head = ["true", "predicted as", "rows", "examples"]
    return "<p class='muted'>Most frequent confusions.</p>" + _table(head, rows, nums=(2,))


def _calibration(c: dict) -> str:
    fit = c["validation_fit"]
    text = (
        f"ECE before temperature scaling <b>{c['ece_before']:.4f}</b>, after "
        f"(T = {c['temperature']:.3f}) <b>{c['ece_after']:.4f}</b> on this test set."
        if c["fitted"]
        else f"ECE <b>{c['ece_before']:.4f}</b>. No temperature is stored: run "
        "<code>tuneforge calibrate MODEL VAL.csv</code> to fit one on validation data."
    )
    if fit is not None:
        text += (
            f" The temperature was fitted on {fit.n} validation rows "
            f"(validation ECE {fit.ece_before:.4f} → {fit.ece_after:.4f}, "
            f"NLL {fit.nll_before:.4f} → {fit.nll_after:.4f})."
        )
    figs = f"<div class='figs'>{c['histogram_svg']}{c['reliability_svg']}</div>"
    return f"<p>{text}</p>{figs}"


def _abstention(a: dict) -> str:
    if a["threshold"] is None:
        text = f"No threshold reaches the target accuracy {a['target']:.2f} on this data."
    else:
        src = a["source"]
        warn = (
            " (chosen on the test set itself, so optimistic: fit it on validation data with "
            "<code>tuneforge calibrate --target-accuracy</code>)"
            if src == "this test set"
            else ""
        )
        text = (
            f"Threshold <b>{a['threshold']:.4f}</b> from {esc(src)}{warn}: predict answers "
            f"<b>{a['coverage']:.1%}</b> of test rows with accuracy "
            f"<b>{(a['accuracy'] or 0):.4f}</b> and returns <code>abstain</code> for the rest."
        )
    return f"<p>{text}</p>{a['svg']}"


def _errors(errors: list[dict]) -> str:
    rows = [
        [esc(e["text"]), esc(e["true"]), esc(e["predicted"]), f"{e['confidence']:.3f}", e["line"]]
        for e in errors
    ]
    head = ["text", "true", "predicted", "confidence", "line"]
    return "<p class='muted'>The most confident mistakes.</p>" + _table(head, rows, nums=(3, 4))


def _robustness(r: dict) -> str:
    clean = r["table"]["clean"]["accuracy"]
    rows = [
        [
            esc(k),
            f"{v['accuracy']:.4f}",
            f"{v['accuracy'] - clean:+.4f}",
            f"{v['changed']:.1%}",
        ]
        for k, v in r["table"].items()
    ]
    head = ["noise", "accuracy", "vs clean", "predictions changed"]
    return f"<p class='muted'>{r['rows']} test rows, seeded noise.</p>" + _table(
        head, rows, nums=(1, 2, 3)
    )


def _data(d: dict) -> str:
    items = [
        f"{d['rows']} test rows; largest/smallest class ratio {d['imbalance']:.1f}",
        f"truncated at max_length: {d['truncation_rate']:.2%} of test texts",
        f"duplicate texts within the test set: {d['duplicates']}",
    ]
    tr = d["train_stats"]
    if tr:
        items.append(
            f"training data: {tr.get('rows')} rows, {tr.get('duplicates', '?')} duplicates, "
            f"truncation {tr.get('truncation_rate', 0):.2%}"
        )
    leak = d["leakage"]
    if leak is None:
        items.append("train/test leakage: pass <code>--train TRAIN.csv</code> to check")
    else:
        cls = "bad" if leak["rows"] else "ok"
        ex = "; ".join(esc(t) for t in leak["examples"])
        items.append(
            f"<span class='{cls}'>train/test leakage: {leak['rows']} test rows also in training"
            f"</span> {('e.g. ' + ex) if ex else ''}"
        )
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f"<ul>{lis}</ul><div class='figs'>{d['balance_svg']}{d['length_svg']}</div>"


def _explanations(e: dict) -> str:
    f = e["faithfulness"]
    verdict = "<span class='ok'>passed</span>" if f.passed else "<span class='bad'>failed</span>"
    faith = (
        f"<p>Faithfulness ({esc(f.method)}, {f.n} test texts): deleting the top-{f.k} attributed "
        f"tokens lowers the predicted class's probability by <b>{f.drop_top_k:.4f}</b> on "
        f"average, deleting {f.k} random tokens by <b>{f.drop_random:.4f}</b>; top-k hurts more "
        f"in {f.win_rate:.0%} of texts — {verdict}.</p>"
    )
    rows = [
        [f"<span>{x['html']}</span>", esc(x["true"]), esc(x["predicted"]), f"{x['confidence']:.3f}"]
        for x in e["errors"]
    ]
    legend = (
        "<p class='muted'>Why the model chose the wrong class: green tokens pushed towards the "
        "predicted class, red against it (integrated gradients).</p>"
    )
    return faith + legend + _table(["text", "true", "predicted", "confidence"], rows, nums=(3,))


def _spans(s: dict) -> str:
    """The token task's section: span scores, per type, errors with their sentences."""
    r = s["result"]
    cards = "".join(
        _card(title, f"{value:.3f}")
        for title, value in (
            ("span F1 (strict, micro)", r.f1),
            ("precision", r.precision),
            ("recall", r.recall),
            ("macro-F1", r.macro_f1),
        )
    )
    cards += _card(
        "sentences", str(r.n), f"{r.gold_spans} gold spans, {r.predicted_spans} predicted"
    )
    per_type = _table(
        ["type", "precision", "recall", "F1", "support"],
        [
            [esc(t), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for t, v in sorted(r.per_type.items(), key=lambda kv: kv[1]["f1"])
        ],
        sortable=True,
        nums=(1, 2, 3, 4),
    )
    errors = r.errors

    def listed(rows: list[dict]) -> str:
        return _table(
            ["span", "type", "sentence"],
            [[f"<b>{esc(e['span'])}</b>", esc(e["type"]), esc(e["text"])] for e in rows],
        )

    confusions = _table(
        ["gold → predicted (same words)", "spans"],
        [[esc(k), n] for k, n in errors.get("confusions", {}).items()],
        nums=(1,),
    )
    return (
        f'<div class="cards">{cards}</div>'
        "<p class='muted'>Strict: a span counts only with exactly the gold words and type.</p>"
        f"<h3>Per type</h3>{per_type}"
        f"<h3>Missed spans ({errors.get('missed_count', 0)})</h3>{listed(errors.get('missed', []))}"
        f"<h3>Spurious spans ({errors.get('spurious_count', 0)})</h3>"
        f"{listed(errors.get('spurious', []))}"
        f"<h3>Type confusions</h3>{confusions}"
    )


SHOWN_CHARS = 2000  # of one prompt, reference or answer; the metrics JSON has them whole


def _text_cell(text: str) -> str:
    cut = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " …"
    return f"<div class='pre'>{esc(cut)}</div>"


def _generative(g: dict) -> str:
    """A chat model's section: the metrics, per JSON field, and the worst answers."""
    r, cfg = g["result"], g["config"]
    meta = (
        f"{r.n} conversations, {r.answered} answered (greedy) · {r.tokens} labelled tokens · "
        f"method <code>{esc(cfg.method)}</code> · base <code>{esc(cfg.base)}</code>"
    )
    rows = [["loss (per labelled token)", f"{r.loss:.4f}"], ["perplexity", f"{r.perplexity:.2f}"]]
    if r.exact_match is not None:
        rows += [
            ["exact match", f"{r.exact_match:.4f}"],
            ["token F1", f"{r.token_f1:.4f}"],
            ["ROUGE-L", f"{r.rouge_l:.4f}"],
        ]
    if r.json_valid is not None:
        rows += [["valid JSON", f"{r.json_valid:.4f}"], ["field F1 (micro)", f"{r.field_f1:.4f}"]]
    out = f"<p class='muted'>{meta}</p>" + _table(["metric", "value"], rows, nums=(1,))
    if r.exact_match is None:
        return out + (
            "<p class='muted'>No conversation ends with an assistant turn: there are no "
            "answers to score, only the loss.</p>"
        )
    if r.field_scores:
        fields = [
            [esc(k), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for k, v in sorted(r.field_scores.items(), key=lambda kv: kv[1]["f1"])
        ]
        head = ["field", "precision", "recall", "F1", "reference items"]
        out += "<h3>Per JSON field</h3>" + _table(head, fields, True, (1, 2, 3, 4))
    return out + "<h3>Worst answers</h3>" + _worst_answers(r.examples)


def _worst_answers(examples: list[dict]) -> str:
    if not examples:
        return "<p class='ok'>Every answer matches its reference.</p>"
    rows = [
        [
            _text_cell(e["prompt"]),
            _text_cell(e["expected"]),
            _text_cell(e["generated"]),
            f"{e['rouge_l']:.3f}",
            f"{e['token_f1']:.3f}",
        ]
        for e in examples
    ]
    note = (
        f"<p class='muted'>The {len(rows)} worst missed answers, lowest ROUGE-L (then token F1)"
        " first.</p>"
    )
    head = ["prompt", "reference", "generated", "ROUGE-L", "token F1"]
    return note + _table(head, rows, nums=(3, 4))


def _training(t: dict) -> str:
    if t["svg"] is None:
        return (
            "<p class='muted'>No step-wise training log in this artifact (e.g. the head "
            "method fits a logistic regression in one go).</p>"
        )
    return t["svg"]


def _compare(c: dict) -> str:
    a, b, m = c["sides"]["A"], c["sides"]["B"], c["mcnemar"]
    rows = [
        ["model", esc(a["name"]), esc(b["name"])],
        ["method", esc(a["method"]), esc(b["method"])],
    ]
    for key in a["intervals"]:
        rows.append([key, str(a["intervals"][key]), str(b["intervals"][key])])
    rows.append(["ECE", f"{a['ece']:.4f}", f"{b['ece']:.4f}"])
    side = _table(["", "A", "B"], rows)
    test = (
        f"<p>McNemar's exact test: {m.only_a} rows only A gets right, {m.only_b} only B; "
        f"p = <b>{m.p_value:.4g}</b> → {esc(m.verdict)}. The models agree on "
        f"{c['agreement']:.1%} of rows.</p>"
    )
    changes = _table(
        ["class", "F1 change (B − A)"],
        [[esc(k), f"{v:+.3f}"] for k, v in c["f1_changes"]],
        nums=(1,),
    )
    return side + test + "<h3>Largest per-class F1 changes</h3>" + changes + c["svg"]


RENDER = {
    "images": render_images,
    "image-data": render_image_data,
    "spans": _spans,
    "generative": _generative,
    "summary": _summary,
    "per-class": _per_class,
    "confusion": _confusion,
    "calibration": _calibration,
    "abstention": _abstention,
    "errors": _errors,
    "robustness": _robustness,
    "data": _data,
    "explanations": _explanations,
    "training": _training,
    "compare": _compare,
}


def render(report: Report) -> str:
    present = [(k, t) for k, t in SECTIONS if k.replace("-", "_") in report.sections]
    nav = "".join(f'<a href="#{k}">{t}</a>' for k, t in present)
    body = "".join(
        f'<section id="{k}"><h2>{t}</h2>{RENDER[k](report.sections[k.replace("-", "_")])}</section>'
        for k, t in present
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(report.title)} · tuneforge report</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(report.title)}</h1><span class='muted'>tuneforge report · built in "
        f"{report.seconds:.0f} s</span></header><nav>{nav}</nav><main>{body}</main>"
        f"<script>{JS}</script></body></html>"
    )


def write_report(report: Report, path: str | Path) -> Path:
    return write_text_atomically(path, render(report))
