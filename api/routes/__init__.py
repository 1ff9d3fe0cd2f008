"""Blueprints by concern: health, meta (metadata), predict (classification)."""
