"""DisCo-Diff's method pieces: discrete latents on top of any continuous diffusion model."""
