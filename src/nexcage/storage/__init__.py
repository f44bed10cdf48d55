"""Layer storage with snapshots: overlay, btrfs, zfs, dir (see base.py for the contract)."""
