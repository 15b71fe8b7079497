"""Models: the VGG-style CNN, the torchvision zoo adapted to the data, weights and freezing."""
