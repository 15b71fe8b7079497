"""Small stand-ins of the real data sets in their real on-disk formats (the assignments' data cannot
be downloaded here): CIFAR-10 python batches, EuroSAT's 2750/ tree, MNIST IDX files, a KITTI devkit
tree, and torch.hub's cache. Each writer makes what the real download would leave on disk."""
