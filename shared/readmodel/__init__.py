"""The Redis read model, one vocabulary: scripts, keys, render (the stored bytes), project, read, client."""
