"""Applications built on tuneforge's public API."""
