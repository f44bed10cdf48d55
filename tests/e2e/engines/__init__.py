"""Engine tests: podman and containerd drive the runtime under test (see tests/conftest.py)."""
