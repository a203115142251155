"""``index.html``: one self-contained page (inline CSS, no scripts, nothing fetched) showing the figures beside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from aeclust.report.table import COLUMNS

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 2rem auto;
       max-width: 1250px; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; } h3 { margin-bottom: 0.3rem; }
.meta, figcaption, .note { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.35rem 0.8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
figure { margin: 1rem 0 2rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


@dataclass
class RunSection:
    """What the page shows of one run: its name, a line of settings, and its figures' file names."""

    anchor: str
    label: str
    details: str
    embedding: str
    history: str
    typical: str
    confusion: str | None
    browser: str  # the cluster browser's overview page
    clusters: int
    merge_tree: str | None = None  # None for a single cluster
    k_choice: str | None = None  # only when k was chosen automatically
    k_reason: str | None = None


def _figure(source: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{escape(source)}" alt="{escape(alt)}" loading="eager">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _table(rows: Sequence[Sequence[str]], sections: Sequence[RunSection]) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in COLUMNS)
    body = []
    for row, section in zip(rows, sections):
        model = f'<a href="#{escape(section.anchor)}">{escape(row[0])}</a>'
        cells = "".join(f"<td>{escape(cell)}</td>" for cell in row[1:])
        body.append(f"<tr><td>{model}</td>{cells}</tr>")
    return f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _per_run(sections: Sequence[RunSection], figure: str, alt: str, caption: str) -> str:
    parts = []
    for section in sections:
        source = getattr(section, figure)
        if source is not None:
            parts.append(f"<h3>{escape(section.label)}</h3>" + _figure(source, f"{section.label}: {alt}", caption))
    return "\n".join(parts)


def _cluster_parts(sections: Sequence[RunSection]) -> str:
    """Part 7, per run: the link to its cluster browser, its merge tree and, when k was chosen, how."""
    parts = []
    for section in sections:
        parts.append(f"<h3>{escape(section.label)}</h3>")
        parts.append(
            f'<p><a class="browser" href="{escape(section.browser)}">Browse all {section.clusters} clusters</a>: '
            "every train image, cluster by cluster, with its file name (or index) on hover.</p>"
        )
        if section.merge_tree is not None:
            parts.append(
                _figure(
                    section.merge_tree,
                    f"{section.label}: merge tree of the clusters",
                    "The clusters' centres joined two at a time (Ward linkage), the most alike first, nearest the "
                    "leaves: a vertical cut further left leaves fewer, larger groups, as a smaller k would.",
                )
            )
        if section.k_choice is not None:
            parts.append(
                _figure(section.k_choice, f"{section.label}: how k was chosen", escape(section.k_reason or ""))
            )
    return "\n".join(parts)


def render_page(
    *,
    title: str,
    data_source: str,
    generated: str,
    rows: Sequence[Sequence[str]],
    sections: Sequence[RunSection],
    reconstructions: str,
    indices: Sequence[int],
) -> str:
    """The whole page: parts 1–6 of the study's report in order, then every cluster of each run (part 7)."""
    index_list = ", ".join(str(index) for index in indices)
    runs = "".join(
        f'<li id="{escape(s.anchor)}"><strong>{escape(s.label)}</strong>: {escape(s.details)} · '
        f'<a href="{escape(s.browser)}">browse its {s.clusters} clusters</a></li>'
        for s in sections
    )
    confusion = _per_run(
        sections,
        "confusion",
        "confusion matrix",
        "Rows: true class. Columns: predicted cluster, with the class the Hungarian matching names it after. "
        "Each cell: the number of images and their share of the true class.",
    )
    if not confusion:
        confusion = (
            '<p class="note">No labels exist for these runs (no val set, no answer key): nothing to confuse.</p>'
        )
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Data: <code>{escape(data_source)}</code> · generated {escape(generated)} by aeclust</p>',
        f'<ul class="meta">{runs}</ul>',
        "<h2>1. Results</h2>",
        _table(rows, sections),
        (
            '<p class="note">val MSE: mean squared reconstruction error on the val images, pixels in [-1, 1]. '
            "Accuracy: max(acc, 1 − acc) for two clusters, Hungarian-matched otherwise; train accuracy needs an "
            "answer key. Training time: the training steps of all epochs (per-epoch evaluation excluded), the whole "
            "run in brackets.</p>"
        ),
        "<h2>2. The 2-D embedding</h2>",
        _per_run(
            sections,
            "embedding",
            "2-D embedding by true class and by predicted cluster",
            "Each image coloured by its true class (when labels exist) beside the same points coloured by the "
            "cluster they were put in; a cluster takes the colour of the class it is matched to, so disagreements "
            "stand out.",
        ),
        "<h2>3. Reconstructions</h2>",
        _figure(
            reconstructions,
            "originals over reconstructions",
            f"Train images {escape(index_list)}: the originals on top, each model's reconstructions below.",
        ),
        "<h2>4. Training</h2>",
        _per_run(
            sections,
            "history",
            "train MSE and val accuracy per epoch",
            "At every checkpoint: reconstruction MSE on all train images (left axis) and the val accuracy of the "
            "whole clustering pipeline run on that checkpoint's latents (right axis).",
        ),
        "<h2>5. Inside each cluster</h2>",
        _per_run(
            sections,
            "typical",
            "most and least typical images of each cluster",
            "Per cluster, the train images closest to the cluster's centre in the 2-D embedding (what the cluster "
            "means) and the farthest (its borderline cases); each frame shows the image's true class when known.",
        ),
        "<h2>6. Confusion matrix</h2>",
        confusion,
        "<h2>7. Every cluster</h2>",
        _cluster_parts(sections),
    ]
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
