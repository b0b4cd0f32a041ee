//! Fidelity fingerprint for files (see the module above).
