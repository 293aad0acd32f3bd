"""What one training run is made of, besides its data and its network: the LightningModule
(module.py) with its metric sums (metrics.py), parameter groups (param_groups.py), EMA weights
(ema.py) and warm-up schedules (schedules.py); reproducibility (seeding.py); checkpoints written
whole or not at all (checkpoints.py); several processes (distributed.py); CPU threads
(cpu_threads.py), speed options (speed.py) and the profiler (profiling.py)."""
