//! Fidelity fingerprint for redis (see the module above).
