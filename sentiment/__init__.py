"""Social-media sentiment: pre-processing, language id, classifier, aspects, index, alerts.

Plain typed Python over Arrow/Polars/DuckDB/NumPy; no Dagster import. The sentence encoder
(torch) is loaded lazily, once per process, by `sentiment.embedding`.
"""
