"""Forward-only SQL migrations (``NNNN_name.sql``) and their runner."""
