//! Verification of CoValue IDs, transaction hash chains and signatures.
