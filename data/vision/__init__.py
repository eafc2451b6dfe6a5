"""Image datasets shared by the vision methods: offline digits / MNIST-5k, torchvision online."""
