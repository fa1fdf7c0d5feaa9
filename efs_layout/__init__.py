"""The one package that knows the on-disk format of releases on EFS and their stamp."""
