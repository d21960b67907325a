"""Images: one read per file for hashes, summaries, fingerprints, sketches and features; near-duplicate search; thumbnails."""
