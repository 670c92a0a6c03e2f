//! Per-plugin cgroups, v1 and v2 behind one trait.
