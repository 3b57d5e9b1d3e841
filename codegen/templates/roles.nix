# Generated from roles.toml by `pika-roles generate`; do not edit.
# Regenerate: {{ command }}
# {{ sha256_line }}
{%- if args.is_empty() %}
{}: {
{%- else %}
{
{%- for arg in args %}
  {{ arg }},
{%- endfor %}
}: {
{%- endif %}
  # registry.nix compares it with builtins.hashFile of roles.toml before any use.
  manifestSha256 = "{{ sha256 }}";
  roles = {{ "{" }}{{ roles }}
  };
}
