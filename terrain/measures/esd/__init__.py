"""The shape of a weight matrix's eigenvalue spectrum (ESD), as WeightWatcher models it."""
