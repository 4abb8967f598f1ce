"""headswap: fine-tune pretrained image classifiers by replacing their classifier head."""

__version__ = "0.1.0"
