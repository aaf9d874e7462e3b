//! tokengate control plane (to be written)
