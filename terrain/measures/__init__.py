"""Pure measures: tensors and arrays in, plain values out. No model loading, no anatomy."""
