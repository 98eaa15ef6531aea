"""The thumbnails worker: its boot module, actors, image making, and the regenerate and collect commands."""
