"""The order of chained runs, read from the configs themselves: a run whose `init_from` names another config's
`out` folder starts from that run, so it comes after it. That is the only place the order is stated; `rescale
train --chain` and `rescale train-set` (and the Makefile's pattern rule, through them) follow it.
"""

import tomllib
from pathlib import Path

DEFAULT_OUT = "runs/{variant}-x{scale}"  # TrainConfig.out_dir's default, for configs that name no `out`


def _out_and_start(config: Path) -> tuple[Path, Path | None]:
    values = tomllib.loads(config.read_text())
    out = values.get("out") or DEFAULT_OUT.format(variant=values.get("variant", "irn"), scale=values.get("scale", 4))
    start = values.get("init_from")
    return Path(out), None if start is None else Path(start)


def run_order(configs: list[Path]) -> list[Path]:
    """`configs` ordered so that each comes after the config whose run it starts from (by name otherwise)."""
    configs = sorted(configs)
    by_out: dict[Path, Path] = {}
    for config in configs:
        out, _ = _out_and_start(config)
        if out in by_out:
            raise ValueError(f"{by_out[out]} and {config} both train into {out}")
        by_out[out] = config
    ordered: list[Path] = []
    visiting: list[Path] = []

    def visit(config: Path) -> None:
        if config in ordered:
            return
        if config in visiting:
            loop = " -> ".join(str(c) for c in visiting[visiting.index(config) :] + [config])
            raise ValueError(f"these configs start from each other in a loop: {loop}")
        visiting.append(config)
        _, start = _out_and_start(config)
        if start is not None and start in by_out:
            visit(by_out[start])
        visiting.pop()
        ordered.append(config)

    for config in configs:
        visit(config)
    return ordered


def with_prerequisites(config: Path) -> list[Path]:
    """The configs beside `config` that its run starts from, transitively, in order, then `config` itself."""
    order = run_order(sorted(config.parent.glob("*.toml")))  # refuses loops and shared outputs
    by_out = {_out_and_start(c)[0]: c for c in order}
    chain = [config]
    while (start := _out_and_start(chain[-1])[1]) in by_out:  # one init_from each: a chain, not a tree
        chain.append(by_out[start])
    return chain[::-1]


def config_set(folder: Path) -> list[Path]:
    """Every config in `folder`, in run order."""
    configs = sorted(folder.glob("*.toml"))
    if not configs:
        raise ValueError(f"{folder} holds no .toml configs")
    return run_order(configs)
