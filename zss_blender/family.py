"""The model's family and the frame size it was made for, for the panel's size line and warning.

SDXL is trained at 1024², SD 2.x at 512² or 768², SD 1.x at 512², the built-in texture model at 64²:
far from that size a model makes repeated or mushy pictures. The family of a local model (a diffusers
folder or a ``.safetensors`` file) is read by ``zss_core.model_check`` (standard library only: JSON
configs or the file's header, nothing loaded). Panels draw often, so each answer is cached by the
model's path and the modification times of the files read: a draw costs a few ``stat`` calls, and the
configs or header are read again only when the model preference or the files change. Hub ids and server
model names are not known before the generator loads them (``None``: no line, no warning).
"""

import os
from dataclasses import dataclass

from ..zss_core import defaults, model_check
from . import jobspec, preferences

FAR = (0.5, 2.0)  # frame area / the family's area outside this range: the size warning
FOLDER_FILES = ("unet/config.json", "scheduler/scheduler_config.json", "model_index.json")  # what model_check reads
SMALL_LABELS = {"builtin:textures": "Built-in texture", "tiny": "Tiny test"}


@dataclass(frozen=True)
class FamilySize:
    """What the panel says about the model: its family's label and the square size it was made for."""

    label: str  # "SDXL", "Stable Diffusion 1.x", …
    size: int | None  # the side of the square it was made for; None: a family ZS² does not run

    def far_from(self, width: int, height: int) -> bool:
        """Whether a width × height clip is far from the model's size (area ratio outside ``FAR``)."""
        if not self.size or width <= 0 or height <= 0:
            return False
        ratio = width * height / (self.size * self.size)
        return not FAR[0] <= ratio <= FAR[1]


class FamilyCache:
    """Model check answers by (path, modification times of the files it reads); ``reads`` counts reads."""

    def __init__(self):
        self.answers = {}
        self.reads = 0

    def family(self, path: str):
        key = (path, _stamp(path))
        if key not in self.answers:
            self.reads += 1
            found = model_check.local_family(path)
            if found is None:
                answer = None
            else:
                answer = FamilySize(found.label, found.default_size if found.supported else None)
            self.answers = {key: answer}  # one model at a time: the preference's
        return self.answers[key]


cache = FamilyCache()


def _stamp(path: str) -> tuple:
    """The modification times (and sizes) of what the model check reads for ``path``; a changed file
    or a folder whose configs changed gets a new key."""
    files = [os.path.join(path, name) for name in FOLDER_FILES] if os.path.isdir(path) else [path]
    stamp = []
    for name in files:
        try:
            info = os.stat(name)
        except OSError:
            stamp.append(None)
            continue
        stamp.append((info.st_mtime_ns, info.st_size))
    return tuple(stamp)


def model_family(prefs) -> FamilySize | None:
    """The family and size of the preferences' model; None when it cannot be known before loading
    (a hub id, a server's model name, a missing or unreadable path)."""
    if preferences.uses_server(prefs):
        return None
    model = jobspec.model_setting(prefs)
    if model in defaults.SMALL_MODELS:
        return FamilySize(SMALL_LABELS.get(model, model), defaults.default_size(model)[0])
    path = jobspec.model_reference(model)
    if not os.path.isdir(path) and not (os.path.isfile(path) and path.lower().endswith(".safetensors")):
        return None
    return cache.family(path)
