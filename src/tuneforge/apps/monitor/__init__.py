"""Financial sentiment monitor: ingest posts, classify sentiment/topic/entities, trend, alert.

`tuneforge monitor init|ingest|serve|replay` (cli/monitor.py). Modules, one concept each:
settings (monitor.yaml), store (SQLAlchemy models, engine), migrations (Alembic), entities,
topics, sentiment, classify, ingest, trends, alerts, webhook, app (FastAPI + dashboard), replay.
"""
