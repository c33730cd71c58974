"""The README's assistant demo on the embedded model: init → train → chat replies on each path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tuneforge.apps.assist.knowledge import AssistConfig
from tuneforge.apps.assist.pipeline import Assistant, open_store


@pytest.mark.integration
@pytest.mark.slow
def test_demo_assistant_answers_retrieves_and_hands_off(tmp_path):
    directory = tmp_path / "bot"
    for verb in ("init", "train"):
        proc = subprocess.run(
            [sys.executable, "-m", "tuneforge", "assist", verb, str(directory)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Validation: intent accuracy" in proc.stdout
    store = open_store(directory, AssistConfig.load(directory))
    bot = Assistant.load(directory, store)
    card = bot.respond("t", "My card still hasn't arrived, it's been a week")
    assert (card.path, card.intent) == ("answer", "card_arrival")
    fee = bot.respond("t", "How much does it cost to exchange 300 euros?")
    assert fee.path == "answer" and "€300" in fee.reply
    article = bot.respond("t", "Should I pay in the local currency at a shop abroad?")
    assert article.path == "retrieval" and article.sources[0]["article"] == "travel.md"
    pizza = bot.respond("t", "Can you recommend a good pizza place near the office?")
    assert pizza.path == "handoff" and pizza.ticket_id is not None
    assert [t.id for t in store.tickets()] == [pizza.ticket_id]
