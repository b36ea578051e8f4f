"""pseudolabel."""
