"""The HTTP side of Stockroom."""
