"""Thin Lambda handlers; the logic lives in efs_layout and in pure functions beside them."""
