//! Fidelity fingerprint for postgres (see the module above).
