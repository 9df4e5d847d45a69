"""mnist_core: train, evaluate and use handwritten-digit classifiers on MNIST.

Importing the package is cheap: modules that need TensorFlow (models, train, predict,
evaluate) import it themselves, so a user interface can start without paying for it.
"""

__version__ = "0.1.0"
