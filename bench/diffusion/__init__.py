"""Shared EDM machinery (Karras et al. 2022): preconditioning, loss, schedules, samplers."""
