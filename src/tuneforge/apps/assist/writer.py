"""The writer: an optional chat model that phrases a retrieved help-article passage as an answer.

Off unless assist.yaml names it (`writer:`, set by `tuneforge assist train-writer DIR`). It is
fine-tuned (task `chat`) on the intents' example questions, each with its approved answer as
the assistant gives it (the template filled from the question's slots), shown in the same
grounded prompt the retrieval path uses later: an instruction to answer only from the passage,
and a passage holding that approved answer next to another intent's (in a random order), so the
model learns to pick out what answers the question and restate only that. Historical
conversations (messages JSONL) may be added. Every text it is trained on or shown is masked
first (`mask_pii`); the citation of a reply comes from the retrieved chunk (the pipeline adds
it), never from the model's text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneforge.apps.assist.knowledge import Answer, AssistConfig
from tuneforge.apps.assist.slots import extract_slots, fill
from tuneforge.errors import ConfigError
from tuneforge.paths import write_text_atomically
from tuneforge.serving.pii import mask_pii

WRITER_DIR = "writer"
TRAINING_FILE = "writer_train.jsonl"  # what the writer was trained on (masked), for audits
INSTRUCTION = (
    "You are a bank's customer-service assistant. Answer the customer's question in one to "
    "three sentences, using only the passage below. Do not add anything the passage does not say."
)
_SENTENCE_END = re.compile(r"[.!?)](?=\s|$)")
_WORD = re.compile(r"[^\W_]+")
# words that say nothing of where an answer's content comes from
_COMMON = (
    "the a an and or to of in on for with your you is are be it its this that at by from can "
    "will we our us as if not no do does have has was were any all"
)
COMMON_WORDS = frozenset(_COMMON.split())


def grounded_messages(question: str, source: str, passage: str) -> list[dict[str, str]]:
    """The prompt of the retrieval path: instruction and passage (system), the question (user)."""
    system = f"{INSTRUCTION}\n\nPassage from “{source}”:\n{passage}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def content_words(text: str) -> list[str]:
    """Lower-case words but the common ones, a plural's -s cut ("fees" and "fee" are one)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in COMMON_WORDS]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


def grounded_share(text: str, passage: str) -> float:
    """Share of `text`'s content words found in `passage` (1.0 when it has none)."""
    words, known = content_words(text), set(content_words(passage))
    return sum(w in known for w in words) / len(words) if words else 1.0


def question_coverage(question: str, text: str, passage: str) -> float:
    """Share of the question's content words that are in `passage` and that `text` keeps
    (1.0 when the passage has none): an answer cut short of them has likely lost the sentence
    that matched the question."""
    said, known = set(content_words(text)), set(content_words(passage))
    asked = set(content_words(question)) & known
    return len(asked & said) / len(asked) if asked else 1.0


def answer_pairs(
    texts: list[str], labels: list[str], answers: dict[str, Answer]
) -> list[tuple[str, str, str]]:
    """(masked question, intent, the reply the assistant gives it) per example question."""
    pairs = []
    for text, intent in zip(texts, labels, strict=True):
        question = mask_pii(text)
        pairs.append((question, intent, fill(answers[intent], extract_slots(question))[0]))
    return pairs


def grounded_conversations(
    pairs: list[tuple[str, str, str]],
    answers: dict[str, Answer],
    seed: int = 0,
    distractor_share: float = 1.0,
) -> list[list[dict[str, str]]]:
    """Each pair as a grounded chat whose target is the reply: the passage is the reply and, for
    `distractor_share` of the pairs, another intent's approved answer (its fallback text: no
    slots), in a random order."""
    rng = np.random.default_rng(seed)
    intents = sorted(answers)
    chats = []
    for question, intent, reply in pairs:
        parts = [reply]
        if len(intents) > 1 and rng.random() < distractor_share:
            other = (intents.index(intent) + int(rng.integers(1, len(intents)))) % len(intents)
            parts.append(fill(answers[intents[other]], {})[0])
        if rng.random() < 0.5:
            parts.reverse()
        source = intent.replace("_", " ").capitalize()
        messages = grounded_messages(question, source, " ".join(parts))
        chats.append([*messages, {"role": "assistant", "content": reply}])
    return chats


def historical_conversations(file: Path) -> list[list[dict[str, str]]]:
    """Past conversations (any `chat` data format), every message masked."""
    from tuneforge.tasks.chat_data import load_chats

    chats = load_chats(file).conversations
    return [[{**m, "content": mask_pii(m["content"])} for m in chat] for chat in chats]


def write_training_file(file: Path, chats: list[list[dict[str, str]]]) -> Path:
    lines = "".join(json.dumps({"messages": chat}, ensure_ascii=False) + "\n" for chat in chats)
    return write_text_atomically(file, lines)


@dataclass
class WriterRun:
    model: object  # the TunedModel
    pairs: int
    conversations: int
    file: Path


def train_writer(
    directory: Path,
    conversations: Path | None = None,
    *,
    base: str = "smollm2",
    method: str = "lora",
    epochs: int = 1,
    per_intent: int | None = None,
    batch_size: int = 8,
    max_length: int = 256,
    distractor_share: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    **options,
) -> WriterRun:
    """Fine-tune the writer on the intents' question → approved-answer pairs (+ conversations),
    save it in `directory`/writer and record it in assist.yaml."""
    import tuneforge
    from tuneforge.apps.assist.build import load_knowledge

    directory = Path(directory)
    cfg = AssistConfig.load(directory)
    intents, answers, _, _ = load_knowledge(directory, cfg)
    if per_intent is not None:  # at most `per_intent` questions of each intent, seeded
        from tuneforge.data.sampling import sample_shots

        intents = sample_shots(intents, per_intent, seed)
    texts, labels = intents.texts, intents.labels
    pairs = answer_pairs(texts, labels, answers)
    chats = grounded_conversations(pairs, answers, seed, distractor_share)
    history = historical_conversations(conversations) if conversations else []
    file = write_training_file(directory / TRAINING_FILE, chats + history)
    model = tuneforge.tune(
        file,
        task="chat",
        base=base,
        method=method,
        epochs=epochs,
        # not the default 32: a batch of 32 grounded prompts (~180 tokens each) takes SmolLM2's
        # activations past 20 GB while training on CPU
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        out=directory / WRITER_DIR,
        progress=progress,
        **options,
    )
    cfg.writer = WRITER_DIR
    cfg.save("# tuneforge assistant: paths are relative to this file's folder.\n")
    return WriterRun(model, len(chats), len(history), file)


class Writer:
    """Phrases a passage as the answer to a (masked) question with a trained chat model."""

    def __init__(self, model, max_new_tokens: int = 96) -> None:
        self.model, self.max_new_tokens = model, max_new_tokens

    @classmethod
    def load(cls, directory: Path, cfg: AssistConfig) -> Writer:
        from tuneforge.tuned_model import TunedModel

        path = Path(directory) / str(cfg.writer)
        if not path.exists():
            raise ConfigError(
                f"writer: {path} not found. Train it with `tuneforge assist train-writer "
                f"{directory}`, or set `writer: null` in {directory}/assist.yaml."
            )
        model = TunedModel.load(path)
        if model.config.task != "chat":
            raise ConfigError(
                f"writer: {path} is a {model.config.task} model; the writer must be a chat "
                f"model (`tuneforge assist train-writer {directory}`)."
            )
        return cls(model, cfg.writer_max_new_tokens)

    def write(self, question: str, source: str, passage: str) -> str:
        """The answer, cut after its last whole sentence when the token budget ran out."""
        from tuneforge.generation import GenerationOptions

        options = GenerationOptions(max_new_tokens=self.max_new_tokens)
        [found] = self.model.predict(
            [grounded_messages(question, source, passage)], options=options
        )
        text = found.text.strip()
        return whole_sentences(text) if found.finish_reason == "length" else text


def whole_sentences(text: str) -> str:
    """`text` up to its last sentence end; '' when no sentence ended (a fragment)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""
