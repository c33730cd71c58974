"""Export a tuned model to ONNX (optionally int8-quantized and layer-pruned) behind an accuracy
gate, and run exported models with onnxruntime through the same `TunedModel` API.

Importing this package is cheap: torch and onnxruntime load only when a function needs them.
"""

from __future__ import annotations

from tuneforge.export.exporter import ExportReport, export_model

__all__ = ["ExportReport", "export_model"]
