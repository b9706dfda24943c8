"""Real-time card-fraud detection: simulator, features (batch = online), models, decisions,
training/registry, streaming assets' logic and the online decision service (seed section 1,
Annex C)."""
