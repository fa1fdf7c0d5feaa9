"""The embedded AWS emulator: moto's server plus the gap fills this stack needs."""
