"""Shared fixtures: `fake_cuda` (a stand-in second device, see fake_device.py)."""

from fake_device import fake_cuda  # noqa: F401  (re-exported as a fixture for every test module)
