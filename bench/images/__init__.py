"""The image half: presets (EDM and DisCo-Diff at three scales), the stage-1 model, the two-stage
pipeline, sampling checkpoints, EDM import and the `sample` command."""
