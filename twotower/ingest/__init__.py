"""Bringing the user's own tables into the offline store: read (CSV / Parquet / JSON lines),
map and check every column, then commit all files at once (``job.ingest``)."""
