"""Atomic training checkpoints, so a killed run resumes with `--resume` where it stopped."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from tuneforge.errors import ConfigError

FILE = "checkpoint.pt"


class Checkpointer:
    """`fingerprint` identifies the run settings: resuming under other settings is refused."""

    def __init__(self, workdir: Path, fingerprint: str = "") -> None:
        self.workdir = Path(workdir)
        self.path = self.workdir / FILE
        self.fingerprint = fingerprint

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, params: dict, optimizer, scheduler, state, best: dict | None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        payload = {
            "params": {n: p.detach() for n, p in params.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": dataclasses.asdict(state),
            "best": best,
            "rng": torch.get_rng_state(),
            "fingerprint": self.fingerprint,
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.path)  # a kill mid-write leaves the previous checkpoint intact

    def load(self, params: dict, optimizer, scheduler, state_cls):
        payload = torch.load(self.path, weights_only=False)
        if payload.get("fingerprint", "") != self.fingerprint:
            raise ConfigError(
                f"{self.path} was written with other training settings (method, data size, "
                "epochs, lr, batch size, ...). Resume with the same command, or drop --resume."
            )
        missing = set(params) - set(payload["params"])
        if missing:
            raise ConfigError(
                f"{self.path} was written for a different model or method "
                f"({len(missing)} parameters missing). Delete it or drop --resume."
            )
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(payload["params"][name])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"])
        return state_cls(**payload["state"]), payload["best"]
