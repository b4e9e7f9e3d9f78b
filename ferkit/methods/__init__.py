"""One folder per paper (torch model + LightningModule + README); :mod:`ferkit.methods.classifier` is the base."""
