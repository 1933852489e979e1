"""Metrics. Names are honest: FID only with an Inception-v3 FID network."""
