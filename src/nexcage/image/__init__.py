"""OCI images: references, the registry client, the content store, manifests and configs.

Never imported by the runtime verbs (docs/DESIGN.md, hot path): only image verbs and
``create --image`` load this package, so ordinary imports (json, typing, dataclasses) are fine.

Third-party packages (urllib3, zstandard) come from the venv's site-packages, which the
``-I -S`` launcher puts on ``sys.path`` (scripts/install-launcher).
"""
