"""The calibrated thresholds of a trained assistant, stored beside its model.

`calibration/thresholds.json` holds the answer threshold for every in-scope score (so the
score can be switched in assist.yaml without retraining), the retrieval threshold, and the
validation figures they were chosen on; `calibration/centroids.npy` the intent centroids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.errors import ArtifactError
from tuneforge.paths import write_dir_atomically

DIR, THRESHOLDS, CENTROIDS = "calibration", "thresholds.json", "centroids.npy"


@dataclass
class Calibration:
    # score kind → lowest score that gets an approved answer (None: target not reachable)
    answer: dict[str, float | None]
    retrieval: float  # lowest cosine similarity that gets an article
    centroids: np.ndarray | None = None
    measured: dict = field(default_factory=dict)  # validation figures behind the thresholds

    def save(self, directory: Path) -> Path:
        def write(tmp: Path) -> None:
            body = {"answer": self.answer, "retrieval": self.retrieval, "measured": self.measured}
            (tmp / THRESHOLDS).write_text(json.dumps(body, indent=1))
            if self.centroids is not None:
                np.save(tmp / CENTROIDS, self.centroids)

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
        centroids = np.load(folder / CENTROIDS) if (folder / CENTROIDS).exists() else None
        return cls(body["answer"], body["retrieval"], centroids, body.get("measured", {}))
