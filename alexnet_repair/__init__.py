"""alexnet_repair: provable (APRNN) repair of CIFAR-10 AlexNet classifiers, and the tools to measure its cost."""

__version__ = "0.1.0"
