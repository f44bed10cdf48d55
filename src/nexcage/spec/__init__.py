"""Pure data about OCI runtime-spec v1.3.0 documents; no OS access, never imports nexcage.host.

- ``model``: the declarative base (slotted, frozen models; kinds; JSON paths; unknown keys kept)
- ``config``: typed config.json models; ``parse_config``, ``load_config``, ``parse_process``,
  ``parse_resources``
- ``validate``: semantic rules, ``validate_config`` / ``validate_process`` /
  ``validate_resources``, each returning every violation with its JSON path
- ``versions``: SemVer, which release introduced which field (``newer_fields``), ``derive_for``
- ``default``: ``default_spec``, the document ``nexcage spec`` writes

Deliberately import-free: ``import nexcage.spec.config`` must not pull in the rest.
"""
