"""deepvs30: Vs30 of seismic stations from strong-motion records with deep sequence models."""

__version__ = "0.1.0"
