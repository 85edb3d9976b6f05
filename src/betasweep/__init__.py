"""betasweep: choose β (and latent size, width, batch size) for a β-VAE by a disentanglement metric."""

__version__ = "0.1.0"
