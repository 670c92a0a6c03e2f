//! Seccomp profiles (data in profiles/seccomp/) compiled to BPF filters.
