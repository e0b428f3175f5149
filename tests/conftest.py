"""Shared pytest configuration."""

pytest_plugins = ["trio_sio.testing.pytest_plugin"]
