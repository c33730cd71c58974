"""Help-article retrieval: chunks, a dense index (usearch) and BM25 (bm25s), fused by rank.

Dense similarity finds paraphrases ("my parcel never came" → card delivery); BM25 keeps exact
words such as product names from being drowned out. Reciprocal-rank fusion merges the two
rankings without having to put cosine similarities and BM25 scores on one scale. The score a
reply reports (and the threshold is calibrated on) is the cosine similarity of the chosen chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tuneforge.apps.assist.knowledge import Article

RRF_K = 60  # the constant of Cormack et al. (2009): damps the weight of the very top ranks
MAX_WORDS = 120


@dataclass(frozen=True)
class Chunk:
    article: str
    title: str
    section: str
    text: str

    @property
    def indexed_text(self) -> str:
        """Title and section make a short chunk's topic explicit to both retrievers."""
        return f"{self.title}. {self.section}. {self.text}" if self.section else self.text


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    similarity: float  # cosine similarity of query and chunk
    bm25: float
    fused: float

    def to_dict(self) -> dict:
        return {
            "article": self.chunk.article,
            "title": self.chunk.title,
            "section": self.chunk.section,
            "similarity": round(self.similarity, 4),
            "bm25": round(self.bm25, 4),
        }


def chunk_article(article: Article, max_words: int = MAX_WORDS) -> list[Chunk]:
    """One chunk per section (`#` headings), long sections cut at paragraph boundaries."""
    chunks, section, paragraphs = [], "", []

    def flush() -> None:
        for text in _pack(paragraphs, max_words):
            chunks.append(Chunk(article.name, article.title, section, text))
        paragraphs.clear()

    for block in re.split(r"\n\s*\n", article.text):
        lines = block.strip().splitlines()
        while lines and lines[0].startswith("#"):
            flush()
            heading = lines.pop(0).lstrip("#").strip()
            section = "" if heading == article.title else heading
        if lines:
            paragraphs.append(" ".join(line.strip() for line in lines))
    flush()
    return chunks


def _pack(paragraphs: list[str], max_words: int) -> list[str]:
    out, current = [], []
    for para in paragraphs:
        if current and len(" ".join(current).split()) + len(para.split()) > max_words:
            out.append(" ".join(current))
            current = []
        current.append(para)
    if current:
        out.append(" ".join(current))
    return out


class Retriever:
    """Hybrid search over the chunks of `articles`; `embed` maps texts to vectors."""

    def __init__(self, articles: list[Article], embed: Callable[[list[str]], np.ndarray]) -> None:
        import bm25s
        from usearch.index import Index

        self.embed, self.articles = embed, articles
        self.chunks = [c for a in articles for c in chunk_article(a)]
        texts = [c.indexed_text for c in self.chunks]
        vectors = _normalize(embed(texts))
        self.index = Index(ndim=vectors.shape[1], metric="cos", dtype="f32")
        self.index.add(np.arange(len(texts)), vectors)
        self.bm25 = bm25s.BM25()
        self.bm25.index(_tokens(texts), show_progress=False)

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """The `k` best chunks, at most one per article, best first."""
        n = len(self.chunks)
        vector = _normalize(self.embed([query]))[0]
        dense = self.index.search(vector, n, exact=n <= 10_000)
        similarity = dict(zip(dense.keys.tolist(), (1.0 - dense.distances).tolist(), strict=True))
        docs, scores = self.bm25.retrieve([_tokens([query])[0]], k=n, show_progress=False)
        bm25 = {int(d): float(s) for d, s in zip(docs[0], scores[0], strict=True) if s > 0}
        fused = dict.fromkeys(similarity, 0.0)
        for ranking in (list(similarity), sorted(bm25, key=bm25.get, reverse=True)):
            for rank, key in enumerate(ranking):
                fused[key] += 1.0 / (RRF_K + rank + 1)
        hits, seen = [], set()
        for key in sorted(fused, key=fused.get, reverse=True):
            chunk = self.chunks[key]
            if chunk.article in seen:
                continue
            seen.add(chunk.article)
            hits.append(Hit(chunk, similarity[key], bm25.get(key, 0.0), fused[key]))
            if len(hits) == k:
                break
        return hits


def _tokens(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall_at_k(retriever: Retriever, queries: list[tuple[str, str]], k: int) -> float:
    """Share of (query, article) pairs whose article is among the top `k` hits."""
    found = sum(
        article in [h.chunk.article for h in retriever.search(q, k)] for q, article in queries
    )
    return found / max(len(queries), 1)
