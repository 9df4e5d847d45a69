"""mnist_core: train, evaluate and use handwritten-digit classifiers on MNIST.

Importing the package is cheap: what needs TensorFlow lives in `mnist_core.ml`, which nothing
else imports at module level, so a user interface can start without paying for it.
"""

__version__ = "0.1.0"
