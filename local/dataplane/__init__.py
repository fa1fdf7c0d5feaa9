"""The local data plane: runs the deployed function code against a folder standing for EFS."""
