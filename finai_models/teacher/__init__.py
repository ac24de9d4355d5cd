"""The multi-task PLE teacher: heterogeneous experts, gates, losses, training and evaluation."""
