"""Data: sources (digits, Fashion-MNIST, MNIST, CIFAR-10, EuroSAT, folders), splits, batch transforms."""
