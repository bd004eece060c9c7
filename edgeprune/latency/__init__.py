"""Latency tables: measured latency of the model's parts at many widths on a profile's backend, fitted so that the
latency of any pruned shape can be predicted, and pruning can aim at a latency instead of a MACs count."""
