"""Export a tuned model to ONNX (optionally int8-quantized and layer-pruned) behind an accuracy
gate, and run exported models with onnxruntime through the same `TunedModel` API; export a chat
model to one GGUF file (llama.cpp, Ollama) or a merged Hugging Face directory, checked on reload.

Importing this package is cheap: torch and onnxruntime load only when a function needs them.
"""

from __future__ import annotations

from tuneforge.export.exporter import ExportReport, export_model
from tuneforge.export.gguf_export import ChatExportReport, export_gguf
from tuneforge.export.hf_export import export_hf

__all__ = ["ChatExportReport", "ExportReport", "export_gguf", "export_hf", "export_model"]
