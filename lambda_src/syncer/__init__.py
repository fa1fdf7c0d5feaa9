"""The syncer function."""
