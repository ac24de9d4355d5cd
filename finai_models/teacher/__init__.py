"""The multi-task PLE teacher: heterogeneous experts, gates, losses, training and evaluation."""

# The neural architectures one training run can be (``ModelConfig.architecture``, the service's
# ``--architecture``); torch-free here so the service parses its arguments before torch loads.
ARCHITECTURES = ("ple", "mmoe", "shared_bottom")
