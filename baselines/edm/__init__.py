"""EDM (Karras et al., NeurIPS 2022): its presets and recipe (`preset`) and its published
networks (`checkpoint`). The network (bench/nets/adm_unet.py), preconditioning, loss and samplers
(bench/diffusion/) are shared machinery that every image model uses."""
