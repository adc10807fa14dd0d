"""The engine and what it stands on: ``capture`` (one forward pass, activations and batched logit
gradients stopped at the layer), ``layers`` (finding a layer, token reshapes), ``targets`` (target
specs to class indices), ``contrast`` (contrast-set strategies), ``maps`` (ReLU, upsampling,
normalisation, degenerate flags) and ``split`` (a network cut at a layer, for Ablation-CAM)."""
