"""The calibrated thresholds of a trained assistant, stored beside its model.

`calibration/thresholds.json` holds the answer threshold for every in-scope score (so the
score can be switched in assist.yaml without retraining), the retrieval threshold, and the
validation figures they were chosen on (with, per score, the rule that set it and the expected
hand-off of questions about unknown intents: thresholds.py, unknown_intents.py);
`calibration/centroids.npy` the intent centroids and `calibration/examples.npy` the training
examples' unit embeddings (for the distance scores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.apps.assist.oos import Reference
from tuneforge.errors import ArtifactError
from tuneforge.paths import write_dir_atomically

DIR, THRESHOLDS = "calibration", "thresholds.json"
CENTROIDS, EXAMPLES = "centroids.npy", "examples.npy"


@dataclass
class Calibration:
    # score kind → lowest score that gets an approved answer (None: target not reachable)
    answer: dict[str, float | None]
    retrieval: float  # lowest cosine similarity that gets an article
    reference: Reference | None = None
    measured: dict = field(default_factory=dict)  # validation figures behind the thresholds

    def save(self, directory: Path) -> Path:
        def write(tmp: Path) -> None:
            body = {"answer": self.answer, "retrieval": self.retrieval, "measured": self.measured}
            (tmp / THRESHOLDS).write_text(json.dumps(body, indent=1))
            if self.reference is not None:
                np.save(tmp / CENTROIDS, self.reference.centroids)
                if self.reference.examples is not None:
                    np.save(tmp / EXAMPLES, self.reference.examples)

        return write_dir_atomically(Path(directory) / DIR, write)

    @classmethod
    def load(cls, directory: Path) -> Calibration:
        folder = Path(directory) / DIR
        if not (folder / THRESHOLDS).exists():
            raise ArtifactError(
                f"{folder / THRESHOLDS} not found: the assistant is not trained. "
                f"Run `tuneforge assist train {directory}`."
            )
        body = json.loads((folder / THRESHOLDS).read_text())
        reference = None
        if (folder / CENTROIDS).exists():
            examples = np.load(folder / EXAMPLES) if (folder / EXAMPLES).exists() else None
            reference = Reference(np.load(folder / CENTROIDS), examples)
        return cls(body["answer"], body["retrieval"], reference, body.get("measured", {}))
