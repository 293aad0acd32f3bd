"""What every command of resnet-exp shares, whatever it runs: the config's own rules
(config.py: composing, quoting, the keys a user set), the console (console.py: one way to print,
values escaped), the one error a user is shown (errors.py), the usage text (usage.py), the
signatures a config's `_target_` is checked against (signatures.py) and the figures' style
(figures.py)."""
