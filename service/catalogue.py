"""Which weights serve which request: (model, mode, scale) -> a registry entry."""

from models.files.header import Header
from models.store.registry import Entry, Registry, UnknownWeightsError

MODES = {"plain": "", "alpha": "-a", "metadata": "-m"}
MODELS = ("irn", "dlv-irn")


class Catalogue:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def resolve(self, *, model: str | None, mode: str, scale: int, format: str = "png") -> Entry:
        """The named model, or the best shipped one: DLV-IRN where present (it beats IRN), else IRN. A plain LR
        or -M LR in a lossy format gets a compression-aware model first (any base), a lossless-trained one
        otherwise."""
        candidates = [model] if model else ["dlv-irn", "irn"]
        kinds = [True, False] if format != "png" and mode != "alpha" else [False]
        for lossy in kinds:
            for base in candidates:
                try:
                    return self.registry.find(base + MODES[mode], scale, lossy=lossy)
                except UnknownWeightsError:
                    continue
        available = ", ".join(sorted(f"{e.config.variant} x{e.config.scale}" for e in self.registry.entries.values()))
        wanted = f"{model or 'irn/dlv-irn'} mode={mode} x{scale}"
        raise UnknownWeightsError(f"no weights loaded for {wanted}; available: {available or 'none'}")

    def for_header(self, header: Header) -> Entry:
        return self.registry.for_header(header)

    def describe(self) -> list[dict]:
        return [
            {
                "variant": e.config.variant,
                "scale": e.config.scale,
                "weights_id": e.weights_id,
                "mode": "alpha" if e.config.alpha else "metadata" if e.config.metadata else "plain",
                "model": e.config.base,
                "config": e.config.to_dict(),
                "superseded_by": e.superseded_by,  # reads the files it made, makes no new ones
            }
            for e in self.registry.entries.values()
        ]
