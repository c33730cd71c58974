"""`OnnxRuntime`: runs an exported `model.onnx` with onnxruntime behind the `Runtime` interface.

It registers itself as `RUNTIMES["onnx"]`, so `TunedModel.load` opens an exported artifact
transparently. The graph has two outputs, `logits` and `embedding`, with a dynamic batch axis;
`forward` returns both from one run (asking for one would skip nothing). Its inputs are the
task's: token ids and mask (dynamic sequence axis) for text, `pixel_values` (batch, 3, s, s) for
images; `forward` feeds whatever the graph declares, in the dtype it declares.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from tuneforge.artifact import ArtifactConfig
from tuneforge.errors import ArtifactError
from tuneforge.runtime import ENCODER_DIR, RUNTIMES

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")  # a text graph's; an image graph reads pixel_values
OUTPUTS = ("logits", "embedding")
_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}


def session_options(threads: int | None = None):
    """Full graph optimisation; thread count from `threads`, `$TUNEFORGE_ORT_THREADS` or ORT."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if os.environ.get("TUNEFORGE_ORT_SPIN", "1") == "0":
        # Waiting threads sleep instead of spinning: the CPU they would burn is what the
        # server's event loop needs to parse, shed and answer under load.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    threads = threads or int(os.environ.get("TUNEFORGE_ORT_THREADS", "0"))
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


class OnnxRuntime:
    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        # Keep the bytes: a reload may replace the artifact directory while we still serve it.
        self._bytes = self.path.read_bytes()
        self.session = ort.InferenceSession(
            self._bytes, session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name: _DTYPES[i.type] for i in self.session.get_inputs()}

    def forward(self, batch: dict) -> dict[str, np.ndarray]:
        """Every output of one pass of the graph."""
        feed = {name: np.ascontiguousarray(batch[name], dtype=t) for name, t in self.inputs.items()}
        return dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), feed), strict=True))

    def save(self, directory: Path, tokenizer) -> None:
        (directory / ONNX_FILE).write_bytes(self._bytes)
        tokenizer.save_pretrained(directory / ENCODER_DIR)

    @classmethod
    def load(cls, directory: Path, config: ArtifactConfig) -> OnnxRuntime:
        path = Path(directory) / ONNX_FILE
        if not path.exists():
            raise ArtifactError(
                f"{directory} says runtime 'onnx' but has no {ONNX_FILE}; export it again "
                "with `tuneforge export MODEL --out DIR`."
            )
        return cls(path)


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy the tokenizer files only (no encoder weights) from an artifact's encoder/ dir."""
    (dst / ENCODER_DIR).mkdir(parents=True, exist_ok=True)
    for file in (src / ENCODER_DIR).iterdir():
        if file.is_file() and not file.name.endswith((".safetensors", ".bin")):
            shutil.copy2(file, dst / ENCODER_DIR / file.name)


RUNTIMES["onnx"] = OnnxRuntime
