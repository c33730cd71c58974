"""Shared fixtures: a tiny random-weight BERT built in the test (offline, seconds) and tiny data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# Under CI a missing browser or database is a broken set-up: fail, never skip (see .ci/run).
SERVICES_REQUIRED = os.environ.get("CI") == "true"
SHARED_DATA = REPO.parent / "shared" / "data"

TOPICS = {
    "card": ["card", "arrived", "delivery", "post", "mail", "lost", "plastic", "pin"],
    "refund": ["refund", "money", "back", "return", "merchant", "charge", "reverse", "owed"],
    "transfer": ["transfer", "bank", "account", "send", "iban", "pending", "wire", "sepa"],
}
FILLER = ["my", "the", "is", "a", "please", "help", "i", "want", "when", "will", "why", "not"]


def make_texts(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic but learnable data: each class has its own keywords among shared filler."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            n = rng.randint(4, 12)
            tokens = [
                rng.choice(words) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(n)
            ]
            tokens[rng.randrange(n)] = rng.choice(words)
            rows.append((" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def make_tagged(n: int, seed: int = 0) -> list[dict]:
    """Synthetic tagged sentences: runs of card words are CARD spans, of refund words MONEY
    spans, among filler (and transfer words, always O)."""
    rng = random.Random(seed)
    kinds = {"CARD": TOPICS["card"], "MONEY": TOPICS["refund"]}
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(2, 4)):
            filler = rng.choice([FILLER, TOPICS["transfer"]])
            tokens += [rng.choice(filler) for _ in range(rng.randint(1, 3))]
            tags += ["O"] * (len(tokens) - len(tags))
            if rng.random() < 0.7:
                kind = rng.choice(sorted(kinds))
                size = rng.randint(1, 3)
                tokens += [rng.choice(kinds[kind]) for _ in range(size)]
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (size - 1)
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _save_tiny_encoder(path: Path, vocab: list[str], kind: str, seed: int, hidden: int) -> Path:
    """A 2-layer random encoder of `kind` ("Bert" or "MPNet") with a word-level tokenizer."""
    import torch
    import transformers

    tokenizer = getattr(transformers, f"{kind}TokenizerFast")
    tokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    torch.manual_seed(seed)
    config = getattr(transformers, f"{kind}Config")(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66 if kind == "MPNet" else 64,  # MPNet: 2 past the padding id
    )
    getattr(transformers, f"{kind}Model")(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-dim random BERT with a word-level vocab of the fixture words."""
    words = sorted({w for ws in TOPICS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *"abcdefghijklmnopqrstuvwxyz"]
    return _save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"), vocab, "Bert", 0, 32)


@pytest.fixture(scope="session")
def tiny_mpnet(tiny_bert, tmp_path_factory) -> Path:
    """A 2-layer, 48-dim random MPNet whose vocabulary is tiny_bert's with MPNet's four special
    tokens in front and <mask> at the end: the layout of all-mpnet-base-v2 against MiniLM."""
    import json

    bert_vocab = json.loads((tiny_bert / "tokenizer.json").read_text())["model"]["vocab"]
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *sorted(bert_vocab, key=bert_vocab.get), "<mask>"]
    return _save_tiny_encoder(tmp_path_factory.mktemp("tiny-mpnet"), vocab, "MPNet", 1, 48)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    return {
        "train": write_csv(root / "train.csv", make_texts(40, seed=1)),
        "test": write_csv(root / "test.csv", make_texts(10, seed=2)),
    }


@pytest.fixture(scope="session")
def tiny_tokens(tmp_path_factory) -> dict[str, Path]:
    """Token-tagged JSONL (tokens + BIO tags): CARD and MONEY spans."""
    root = tmp_path_factory.mktemp("tokens")
    return {
        "train": write_jsonl(root / "train.jsonl", make_tagged(160, seed=1)),
        "test": write_jsonl(root / "test.jsonl", make_tagged(40, seed=2)),
    }


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))


def needs_service(reason: str) -> None:
    """Skip a test whose service (browser, PostgreSQL) is missing, with the reason; under CI,
    where .ci/run has set them up, fail instead, so a broken set-up cannot pass as skips."""
    if SERVICES_REQUIRED:
        pytest.fail(f"{reason} [CI=true: the set-up in .ci/run should have provided it]")
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """One line after the short summary: how many tests were skipped, and why (each reason's
    first line, shortened)."""
    yield
    skipped = terminalreporter.stats.get("skipped", [])
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ").splitlines()[0][:160]
        reasons[reason] = reasons.get(reason, 0) + 1
    why = "; ".join(f"{n} × {reason}" for reason, n in sorted(reasons.items(), key=lambda x: -x[1]))
    terminalreporter.write_line(f"skipped: {len(skipped)}" + (f" ({why})" if why else ""))


def shared_data(*parts: str) -> Path:
    """Path into ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data sets are not in a user's clone)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_bert, tiny_data, tmp_path_factory) -> Path:
    """A tiny `full` model trained once per session. Read-only: copy it before changing it."""
    import tuneforge

    out = tmp_path_factory.mktemp("tiny-model") / "m"
    tuneforge.tune(
        tiny_data["train"],
        base=str(tiny_bert),
        method="full",
        epochs=6,
        lr=3e-3,
        batch_size=8,
        early_stopping=0,
        progress=False,
        out=out,
    )
    return out


# ---- PostgreSQL (the apps' storage tests) --------------------------------------------------
PG_ENV = "TUNEFORGE_TEST_PG_URL"
# .ci/setup-postgres.sh: Debian's local server, peer authentication over the Unix socket
PG_DEFAULT_URL = "postgresql+psycopg:///tuneforge_test?host=/var/run/postgresql"


@pytest.fixture
def pg_schema():
    """(URL whose connections default to a fresh schema, schema name); dropped afterwards, so
    test runs sharing one server never see each other's rows. Skips, with the reason, when
    there is no server: set $TUNEFORGE_TEST_PG_URL or run .ci/setup-postgres.sh."""
    import secrets

    pytest.importorskip("psycopg", reason="needs psycopg 3: pip install 'psycopg[binary]>=3.1'")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get(PG_ENV) or PG_DEFAULT_URL)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = create_engine(url, connect_args={"connect_timeout": 5})
    schema = f"tf_test_{secrets.token_hex(6)}"
    try:
        with admin.begin() as db:
            db.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no server, no role, no database: say which
        admin.dispose()
        where = url.render_as_string(hide_password=True)
        needs_service(
            f"no PostgreSQL at {where} (set {PG_ENV} or run .ci/setup-postgres.sh): {exc}"
        )
    try:
        # libpq `options`: every connection starts with this schema as its default
        scoped = url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False), schema
    finally:
        with admin.begin() as db:
            db.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# ---- headless Chromium (browser tests): Debian's build, driven by Playwright ----------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="module")
def playwright_api():
    if not CHROMIUM.exists():
        needs_service(f"needs {CHROMIUM}: run .ci/setup-browser.sh")
    try:
        import playwright.sync_api
    except ImportError:
        needs_service("needs playwright: run .ci/setup-browser.sh")
    return playwright.sync_api


@pytest.fixture(scope="module")
def launch_chromium(playwright_api):
    """`launch_chromium(pw)`: a headless Chromium browser from a started `sync_playwright()`."""
    return lambda pw: pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
