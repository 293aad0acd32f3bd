"""Architectures, each one builder per family; ablations are constructor arguments."""
