"""One module per resource: parse -> command or query -> response."""
