"""The inference function."""
