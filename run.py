"""reprolab entry point: `python run.py method=erc env=dmc`, `python run.py -m method=erc,sac seed=0,1,2`.

Composition stays light (no torch, dm-control or transformers) so `--help` and config errors are instant.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from runners.schemas import register_all
from runners.validate import check_overrides

register_all()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from runners.execute import execute  # heavy imports start here, after the config is known to be valid

    return execute(cfg)


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
