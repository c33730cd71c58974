"""Applications built on tuneforge models (each a subpackage with its own CLI verb)."""
