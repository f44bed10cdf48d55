"""The directory layout the dir, overlay and btrfs drivers share under their root:

- ``layers/<hex>``: a committed layer, recognised by its ``COMMITTED`` entry (the tree, diff or
  subvolume); ``layers/<hex>/parent`` names the parent chain id;
- ``layers/.tmp-<hex>``: a layer being prepared (invisible to ``has_layer`` and ``layers``);
- ``containers/<id>``: a container rootfs and its records.
"""

from __future__ import annotations

import os

from nexcage.storage import files, names

PARENT = "parent"


class LayerDirs:
    """Mixin: the layer and container paths of a driver with the layout above."""

    name: str
    COMMITTED: str  # the entry inside layers/<hex> that exists once the layer is committed
    _layers: str
    _containers: str

    def _layer_dir(self, chain_id: str) -> str:
        return os.path.join(self._layers, names.chain_hex(self.name, chain_id))

    def _tmp_layer(self, chain_id: str) -> str:
        return os.path.join(self._layers, ".tmp-" + names.chain_hex(self.name, chain_id))

    def has_layer(self, chain_id: str) -> bool:
        return os.path.isdir(os.path.join(self._layer_dir(chain_id), self.COMMITTED))

    def layers(self) -> list[str]:
        found = []
        for entry in files.listdir(self._layers):
            chain = names.chain_from_hex(entry)
            if chain and os.path.isdir(os.path.join(self._layers, entry, self.COMMITTED)):
                found.append(chain)
        return sorted(found)

    def _layer_parent(self, chain_id: str) -> str | None:
        return files.read(os.path.join(self._layer_dir(chain_id), PARENT)) or None

    def _container_dir(self, container_id: str) -> str:
        return os.path.join(self._containers, names.check_container(self.name, container_id))
