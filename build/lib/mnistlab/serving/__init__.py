"""Using a trained model: MNIST-style preprocessing of real images, the torch and ONNX backends behind one
``Predictor``, prediction of files, the HTTP API with its drawing page, and export."""
