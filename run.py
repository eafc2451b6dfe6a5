"""reprolab entry point: `python run.py method=erc env=dmc`, `python run.py -m method=erc,sac seed=0,1,2`.

Composition stays light (no torch, dm-control or transformers) so `--help` and config errors are instant.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from runners.distributed import launched_rank_argv
from runners.schemas import register_all
from runners.validate import check_overrides

register_all()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from data.llm.client import EndpointDown
    from runners.execute import execute  # heavy imports start here, after the config is known to be valid
    from runners.identity import ResumeRefused
    from runners.validate import ConfigError

    try:
        return execute(cfg)
    except (ConfigError, EndpointDown) as ex:  # the message says it all: no traceback
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # a sweep records the job as failed and goes on with the others
        if isinstance(ex, EndpointDown):  # names the endpoint, the cached replies and how to resume
            print(f"Stopped: {ex}", file=sys.stderr)
            sys.exit(1)
        print(f"{'Refused' if isinstance(ex, ResumeRefused) else 'Config error'}: {ex}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    sys.argv[1:] = launched_rank_argv(sys.argv[1:])  # a rank Lightning launched in a sweep job: that job
    check_overrides(sys.argv[1:])
    main()
