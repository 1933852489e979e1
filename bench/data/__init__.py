"""Datasets: the 2D mixture, image datasets, PDBBind."""
