"""Images: each file read once into a summary (hashes, statistics, fingerprint, sketch); pair search; thumbnails."""
