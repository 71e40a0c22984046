"""Pure measures: tensors (or an Anatomy) in, plain values out. No model loading here."""
