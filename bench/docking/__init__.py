"""DiffDock pose-diffusion math (Corso et al., ICLR 2023): noise schedules, IGSO(3), torus, torsions."""
