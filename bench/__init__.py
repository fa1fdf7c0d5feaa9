"""`make bench`: this stack's inference handler against the naive Lambda + EFS handler, same run."""
