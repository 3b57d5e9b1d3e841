# The roles digest of one role: sha256 (hex) of `builtins.toJSON` of the role's table as
# `builtins.fromTOML` reads roles.toml. The codegen computes the same value in Rust
# (codegen/src/digest.rs) and writes it into roles.nix as `rolesDigest`; registry.nix recomputes it
# here and refuses a roles.nix whose digest differs. It depends on the role's own table only, so
# editing one role changes no other role's digest.
roleTable: builtins.hashString "sha256" (builtins.toJSON roleTable)
