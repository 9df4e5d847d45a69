"""What needs TensorFlow: building models, the training loop, augmentation, TensorBoard event
files, Keras model files, ONNX export, ensembles, imported models and gradient explanations.

Workers and the command line import these modules; the web process only on demand (a gradient
map). Nothing outside this subpackage imports TensorFlow (`tests/unit/test_imports.py`).
"""
