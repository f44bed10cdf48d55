"""Pure translations of a runtime spec into backend configuration: no OS access here.

- ``lxc_config``: config.json -> LXC config keys (plus the records nexcage's LXC init helper
  reads), with a :class:`~nexcage.errors.Finding` for everything LXC cannot express.

Host facts a translation depends on (cgroup layout, whether a bind source is a directory) are
passed in as data, so every rule is unit-tested without a container.
"""
