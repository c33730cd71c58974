"""The report of an image model: the classification parts of `build_report` (summary with
intervals, per-class table, confusion matrix, calibration, abstention, comparison) plus the
pictures: thumbnails of the most confident mistakes and of the most confused class pairs, and
attribution heatmaps for the top mistakes.

Thumbnails are small JPEG data URIs (96 px on the longer side, ~3 KB each) and their number is
capped, so the report stays one self-contained HTML file of a few hundred KB whatever the size
of the test set. The heatmaps (integrated gradients, `image_explain`) cost n_steps forward and
backward passes each: a few, with few steps.
"""

from __future__ import annotations

import base64
import io
import os
from collections import Counter
from pathlib import Path

import numpy as np

from tuneforge.evaluation import plots
from tuneforge.evaluation.report import (
    ReportOptions,
    Scored,
)


def thumbnail_uri(image, side: int = 96, quality: int = 80) -> str:
    """A decoded picture (PIL) as a JPEG data URI, its longer side at most `side` pixels."""
    thumb = image.convert("RGB")
    thumb.thumbnail((side, side))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def shown_path(ds, i: int) -> str:
    """Row `i`'s path relative to the data folder (or the CSV's folder) when that is shorter."""
    src = Path(ds.source)
    base = src if src.is_dir() else src.parent
    try:
        rel = os.path.relpath(ds.texts[i], base)
    except ValueError:  # another drive
        return ds.texts[i]
    return ds.texts[i] if rel.startswith("..") else rel


def image_sections(model, test, scored: Scored, opts: ReportOptions, train=None) -> dict:
    """The sections an image model's report has where a text model's has errors, robustness,
    data and explanations (`report.build_report` makes the rest, for every classifier)."""
    return {
        "images": image_section(model, test, scored, opts),
        "image_data": _image_data(model, test, train),
    }


def image_section(model, test, scored: Scored, opts: ReportOptions) -> dict:
    """Thumbnails of the most confident mistakes, of the top confused pairs, and heatmaps."""
    opened: dict[int, object] = {}

    def picture(i: int):
        if i not in opened:
            opened[i] = model.tokenizer.open(test.texts[i])
        return opened[i]

    def row(i: int) -> dict:
        return {
            "image": shown_path(test, i),
            "line": test.lines[i],
            "true": test.labels[i],
            "predicted": scored.pred[i],
            "confidence": float(scored.conf[i]),
            "uri": thumbnail_uri(picture(i), opts.thumbnail_px),
        }

    wrong = np.flatnonzero(~scored.correct)
    order = [int(i) for i in wrong[np.argsort(-scored.conf[wrong], kind="stable")]]
    mistakes = [row(i) for i in order[: opts.image_mistakes]]
    pair_counts = Counter((test.labels[i], scored.pred[i]) for i in order)
    pairs = []
    for (gold, pred), count in pair_counts.most_common(opts.image_pairs):
        rows = [i for i in order if test.labels[i] == gold and scored.pred[i] == pred]
        pairs.append(
            {
                "true": gold,
                "predicted": pred,
                "count": count,
                "examples": [row(i) for i in rows[: opts.images_per_pair]],
            }
        )
    heatmaps = _heatmaps(model, test, order[: opts.image_heatmaps], picture, opts)
    return {
        "errors": len(order),
        "n": len(test),
        "mistakes": mistakes,
        "pairs": pairs,
        "heatmaps": heatmaps,
        "heatmap_steps": opts.heatmap_steps,
    }


def _heatmaps(model, test, rows: list[int], picture, opts: ReportOptions) -> list[dict]:
    """Integrated-gradients heatmaps for the predicted (wrong) class of each row."""
    from tuneforge.evaluation.image_explain import explain_image, overlay

    out = []
    for i in rows:
        exp = explain_image(model, picture(i), n_steps=opts.heatmap_steps, name=test.texts[i])
        side = max(opts.thumbnail_px, min(exp.size[0], opts.heatmap_px))
        out.append(
            {
                "image": shown_path(test, i),
                "true": test.labels[i],
                "predicted": exp.label,
                "confidence": exp.score,
                "method": exp.method,
                "side": side,
                "uri": thumbnail_uri(picture(i), side),
                "heatmap": thumbnail_uri(overlay(exp).resize((side, side)), side, quality=85),
            }
        )
    return out


def _image_data(model, test, train) -> dict:
    from tuneforge.images.dataset import image_stats, overlap_warning

    counts = test.class_counts().most_common()
    out = {
        "rows": len(test),
        "class_counts": counts,
        "imbalance": counts[0][1] / max(1, counts[-1][1]) if counts else 1.0,
        "stats": image_stats(test, decode_images=True),
        "train_stats": model.config.data,
        "input_size": model.tokenizer.transform.size,
        "balance_svg": plots.bar_chart(
            [c for c, _ in counts], [n for _, n in counts], "test images per class"
        ),
        "leakage": None,
    }
    if train is not None:
        out["leakage"] = overlap_warning(train, test, "test") or ""
    return out


# ---- layout (used by report_html) -----------------------------------------------------------
def _esc(value) -> str:
    import html

    return html.escape(str(value))


def _figure(e: dict, caption: str) -> str:
    return (
        f'<figure class="thumb"><img src="{e["uri"]}" alt="{_esc(e["image"])}" '
        f'title="{_esc(e["image"])}"><figcaption>{caption}</figcaption></figure>'
    )


def _mistake_caption(e: dict) -> str:
    return (
        f"<span class='ok'>{_esc(e['true'])}</span> → <span class='bad'>"
        f"{_esc(e['predicted'])}</span> {e['confidence']:.3f}<br>"
        f"<span class='muted'>{_esc(e['image'])}</span>"
    )


def render_images(s: dict) -> str:
    if not s["errors"]:
        return f"<p class='ok'>All {s['n']} test images are classified correctly.</p>"
    shown = len(s["mistakes"])
    out = (
        f"<p>{s['errors']} of {s['n']} test images are misclassified. The {shown} most "
        "confident mistakes (true → predicted, score):</p><div class='thumbs'>"
        + "".join(_figure(e, _mistake_caption(e)) for e in s["mistakes"])
        + "</div>"
    )
    if s["pairs"]:
        out += "<h3>Most confused pairs</h3>"
        for p in s["pairs"]:
            out += (
                f"<p><b>{_esc(p['true'])}</b> predicted as <b>{_esc(p['predicted'])}</b>: "
                f"{p['count']} image(s)</p><div class='thumbs'>"
                + "".join(
                    _figure(
                        e, f"{e['confidence']:.3f} <span class='muted'>{_esc(e['image'])}</span>"
                    )
                    for e in p["examples"]
                )
                + "</div>"
            )
    if s["heatmaps"]:
        out += (
            "<h3>Why: attributions for the top mistakes</h3><p class='muted'>Integrated "
            f"gradients ({s['heatmap_steps']} steps) for the predicted class, summed over "
            "channels, over the model's input (its centre crop): bright = pushed the model "
            "towards the wrong label; grey = no evidence.</p><div class='thumbs'>"
        )
        for h in s["heatmaps"]:
            caption = _mistake_caption(h)
            size = f"width:{h['side']}px;height:{h['side']}px"
            out += (
                f'<figure class="pair"><img src="{h["uri"]}" alt="{_esc(h["image"])}" '
                f'style="{size}"><img src="{h["heatmap"]}" alt="heatmap of '
                f'{_esc(h["image"])}" style="{size}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        out += "</div>"
    return out


def render_image_data(d: dict) -> str:
    st = d["stats"]
    items = [
        f"{d['rows']} test images; largest/smallest class ratio {d['imbalance']:.1f}",
        f"model input: {d['input_size']} × {d['input_size']} px (resize, centre crop)",
    ]
    if "width_mean" in st:
        items.append(
            f"mean size {st['width_mean']:.0f} × {st['height_mean']:.0f} px, shortest side "
            f"{st['short_side_min']} px; duplicate copies within the test set: {st['duplicates']}"
        )
    tr = d["train_stats"]
    if tr:
        items.append(f"training data: {tr.get('rows')} images, {tr.get('classes')} classes")
    leak = d["leakage"]
    if leak is None:
        items.append("train/test overlap: pass <code>--train TRAIN_FOLDER</code> to check")
    elif leak:
        items.append(f"<span class='bad'>{_esc(leak)}</span>")
    else:
        items.append("<span class='ok'>train/test overlap: no test picture is in training</span>")
    lis = "".join(f"<li>{i}</li>" for i in items)
    return f"<ul>{lis}</ul><div class='figs'>{d['balance_svg']}</div>"
