"""Local stand-ins for AWS: the emulated control plane and (later) the data plane."""
