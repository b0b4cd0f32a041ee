//! Fidelity fingerprint for sqlite (see the module above).
