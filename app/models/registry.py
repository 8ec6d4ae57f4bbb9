"""The registry of a service's models: loads each on first use, keeps at most
``PIXELCNN_MAX_LOADED_MODELS`` in memory (least recently used leaves first, never one with
queued or running work), and picks up changed, added and removed files on ``reload``.

Every method may block (loading reads and checks a file): routes call them in a thread. A
route holds the ``ServedModel`` it was given, and its job queues with it, so swapping in new
weights never changes a request that already started.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.errors import ClientError, shown
from app.models.repository import RepositoryError, WeightsFile, scan
from app.models.served import ServedModel, codec_hash_of, describe
from app.schemas import ModelInfo, ModelStatus, ReloadReport
from app.settings import Settings
from app.worker import InferenceWorker
from model.checkpoint import CheckpointError, file_sha256, load
from model.classifier import classifier_for
from model.codec.range_coder import weights_hash
from model.network.classifier import Classifier
from model.network.pixelcnn import PixelCNN, PixelCNNConfig

log = logging.getLogger("app")


@dataclass(eq=False)
class Entry:
    """A model name and what the registry knows of it: its file (None for a model given in
    memory), its description (None when the file's header cannot be read), the loaded version
    if any, and why it cannot serve (``error``) or why its last replacement was refused."""

    name: str
    file: WeightsFile | None
    info: ModelInfo | None
    served: ServedModel | None = None
    error: str | None = None
    refused: str | None = None
    last_used: float = 0.0
    loading: threading.Lock = field(default_factory=threading.Lock, repr=False)


class ModelRegistry:
    def __init__(
        self, settings: Settings, worker: InferenceWorker, in_memory: Mapping[str, PixelCNN] | None = None
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.lock = threading.RLock()
        self.reloading = threading.Lock()
        self.entries: dict[str, Entry] = {}
        if in_memory:
            for name, model in in_memory.items():
                info = describe(name, model.config, {}, "in-memory", "")
                entry = Entry(name, None, info)
                entry.served = self._serve(name, model, info, weights_hash(model))
                self.entries[name] = entry
        else:
            self.entries = {f.name: self._entry(f, file_sha256(f.path)) for f in scan(settings.weights)}

    # --- which model a request gets ---------------------------------------------------------
    @property
    def default(self) -> str:
        """``PIXELCNN_DEFAULT_MODEL`` when it names a model, else the first by name that can serve."""
        with self.lock:
            wanted = self.settings.default_model
            if wanted and wanted in self.entries:
                return wanted
            if not self.entries:
                raise ClientError(503, "this server has no models: every weights file was removed")
            usable = [name for name in sorted(self.entries) if self.entries[name].error is None]
            return usable[0] if usable else min(self.entries)

    def entry(self, name: str | None) -> Entry:
        with self.lock:
            chosen = name or self.default
            found = self.entries.get(chosen)
            if found is None:
                raise ClientError(
                    404, f"no model named {shown(chosen)}; this server has: {', '.join(sorted(self.entries))}"
                )
            return found

    def get(self, name: str | None, hold: bool = False) -> ServedModel:
        """The loaded model ``name`` (None: the default), loading it first if need be (503 when
        its file cannot be loaded, naming it and why). ``hold``: it counts as busy, never to be
        unloaded, until the caller calls ``hold(-1)`` on it."""
        entry = self.entry(name)
        with entry.loading:
            if entry.served is None:
                if entry.error is not None:
                    raise ClientError(503, f"model {entry.name!r} cannot be served: {entry.error}")
                assert entry.file is not None  # in-memory models are always loaded
                try:
                    loaded = self._load(entry.file, self._sha(entry))
                except CheckpointError as exc:
                    entry.error = str(exc)
                    log.error("model %r cannot be loaded: %s", entry.name, exc)
                    raise ClientError(503, f"model {entry.name!r} cannot be served: {exc}") from None
                with self.lock:
                    entry.served = loaded
            with self.lock:  # trim takes this lock too: nothing unloads it in between
                served = entry.served
                entry.last_used = time.monotonic()
                if hold:
                    served.hold(1)
        self.trim(keep=entry)
        return served

    def load_default(self) -> ServedModel:
        """Load the default model now (at startup). When none is set, that is the first by name
        that loads; a default that cannot load (or none at all) stops the service."""
        wanted = self.settings.default_model
        if wanted and wanted not in self.entries:
            raise RepositoryError(
                f"PIXELCNN_DEFAULT_MODEL={wanted!r} names no model; "
                f"there are: {', '.join(sorted(self.entries))}"
            )
        while True:
            try:
                return self.get(None)
            except ClientError as exc:
                if wanted or all(entry.error is not None for entry in self.entries.values()):
                    raise CheckpointError(exc.detail) from None

    def trim(self, keep: Entry | None = None) -> None:
        """Unload the least recently used idle models beyond ``max_loaded_models``."""
        with self.lock:
            loaded = [e for e in self.entries.values() if e.served is not None and e.file is not None]
            excess = len(loaded) - self.settings.max_loaded_models
            for entry in sorted(loaded, key=lambda e: e.last_used):
                if excess <= 0:
                    break
                idle = entry.served is not None and entry.served.busy == 0
                if entry is not keep and idle:
                    log.info("unloading model %r (least recently used)", entry.name)
                    entry.served = None
                    excess -= 1

    # --- what /models says --------------------------------------------------------------------
    def status(self, entry: Entry) -> ModelStatus:
        return ModelStatus(
            name=entry.name,
            default=entry.name == self.default,
            loaded=entry.served is not None,
            error=entry.error,
            reload_error=entry.refused,
            info=entry.info,
        )

    def listing(self) -> list[ModelStatus]:
        with self.lock:
            return [self.status(self.entries[name]) for name in sorted(self.entries)]

    def codec_owner(self, codec_hash: bytes) -> str | None:
        """The model whose weights write ``codec_hash`` into a container, if exactly one does."""
        with self.lock:
            owners = [e.name for e in self.entries.values() if self._codec_hash(e) == codec_hash]
        return owners[0] if len(owners) == 1 else None

    # --- replacing files --------------------------------------------------------------------
    def reload(self) -> ReloadReport:
        """Pick up changed, added and removed files. A file that fails to load is refused: the
        old weights keep serving (the reason goes to the log and to ``/models``)."""
        with self.reloading:  # one reload at a time
            return self._reload()

    def _reload(self) -> ReloadReport:
        report = ReloadReport()
        if all(entry.file is None for entry in self.entries.values()):
            return report  # models given in memory have no files to reload
        files = {f.name: f for f in scan(self.settings.weights)}
        for name, file in files.items():
            old = self.entries.get(name)
            if old is not None and old.file == file:  # same path, size, mtime and header
                continue
            sha = file_sha256(file.path)
            if old is not None and old.info is not None and old.info.sha256 == sha:
                old.file = file
                continue
            try:
                served = self._load(file, sha)
            except CheckpointError as exc:
                log.error("reload: model %r refused, %s", name, exc)
                report.refused[name] = str(exc)
                if old is not None and (old.served is not None or old.error is None):
                    old.refused = str(exc)  # the weights loaded before keep serving
                else:
                    with self.lock:
                        self.entries[name] = Entry(name, file, None, error=str(exc))
                continue
            keep_loaded = old is not None and old.served is not None
            entry = self._entry(file, sha)
            entry.served, entry.last_used = (served, time.monotonic()) if keep_loaded else (None, 0.0)
            with self.lock:
                self.entries[name] = entry
            (report.replaced if old is not None else report.added).append(name)
            log.info("reload: model %r %s (sha256 %s)", name, "replaced" if old else "added", sha[:12])
        with self.lock:
            for name in [n for n, e in self.entries.items() if n not in files and e.file is not None]:
                del self.entries[name]
                report.removed.append(name)
                log.info("reload: model %r removed", name)
        self.trim()
        return report

    # --- building entries -------------------------------------------------------------------
    def _entry(self, file: WeightsFile, sha256: str) -> Entry:
        if file.metadata is None:
            return Entry(file.name, file, None, error=file.error)
        try:
            config = PixelCNNConfig.from_json(file.metadata["config"])
        except (KeyError, ValueError, TypeError) as exc:
            return Entry(
                file.name, file, None, error=f"{file.path.name}: invalid model config in header ({exc})"
            )
        return Entry(file.name, file, describe(file.name, config, file.metadata, file.path.name, sha256))

    def _sha(self, entry: Entry) -> str:
        return entry.info.sha256 if entry.info is not None else ""

    def _codec_hash(self, entry: Entry) -> bytes:
        if entry.served is not None:
            return entry.served.codec_hash
        return codec_hash_of(entry.file.metadata or {}) if entry.file is not None else b""

    def _load(self, file: WeightsFile, sha256: str) -> ServedModel:
        """Load and check ``file`` (CheckpointError when it cannot serve)."""
        model = load(file.path)
        info = describe(file.name, model.config, file.metadata or {}, file.path.name, sha256)
        return self._serve(file.name, model, info, weights_hash(model))

    def _serve(self, name: str, model: PixelCNN, info: ModelInfo, codec_hash: bytes) -> ServedModel:
        classifier = label_classifier(model, self.settings)
        return ServedModel(name, model, info, self.worker, classifier, codec_hash)


def label_classifier(model: PixelCNN, settings: Settings) -> Classifier | None:
    """The classifier that guesses labels for /compress and /upscale, when one is set and fits."""
    if settings.classifier is None:
        return None
    try:
        classifier, why_not = classifier_for(model, settings.classifier)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (set PIXELCNN_CLASSIFIER= empty to serve without one)") from exc
    if why_not and model.config.num_classes:
        log.info("no label classifier for this model (/compress searches, /upscale infers): %s", why_not)
    return classifier
