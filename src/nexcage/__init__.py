"""nexcage: a runc-compatible container runtime front-end."""

__version__ = "0.1.0"
# The runtime-spec version nexcage understands and reports in `state` and `features`.
OCI_VERSION = "1.3.0"
