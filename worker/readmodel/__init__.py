"""The cache worker: keeps the Redis read model in step with PostgreSQL (boot, actors, refresh, rebuild)."""
