"""What the API and the workers both need and neither owns."""
