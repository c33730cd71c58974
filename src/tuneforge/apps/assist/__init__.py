"""Customer-service assistant: approved answers by intent, help-article retrieval, hand-off.

`tuneforge assist init DIR` → `train DIR` → `chat DIR` / `serve DIR` / `eval DIR`.
"""
